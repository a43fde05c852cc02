/**
 * Reading struct uffd_msg records in place (include/uapi/linux/userfaultfd.h; 32 bytes, packed):
 * event u8 @0; pagefault {flags u64 @8, address u64 @16, ptid u32 @24}; fork {ufd u32 @8};
 * remap {from @8, to @16, len @24}; remove/unmap {start @8, end @16}.
 *
 * The fault path reads fields straight from the bytes read(2) returned instead of building the
 * nested objects decodeUffdMsgs() returns, so a fault costs one object (the Fault) and no more.
 * test/msg.test.ts checks these readers against decodeUffdMsgs.
 */
export { UFFD_MSG_SIZE } from "@uffd/kernel/uapi";

/** A u64 field as a number (user addresses and lengths stay below 2^53). */
export function u64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

export function u32(view: DataView, offset: number): number {
  return view.getUint32(offset, true);
}
