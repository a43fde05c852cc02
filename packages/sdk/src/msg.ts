/**
 * Reading struct uffd_msg records in place (include/uapi/linux/userfaultfd.h; 32 bytes, packed):
 * event u8 @0; pagefault {flags u64 @8, address u64 @16, ptid u32 @24}; fork {ufd u32 @8};
 * remap {from @8, to @16, len @24}; remove/unmap {start @8, end @16}.
 *
 * The fault path reads fields straight from the bytes read(2) returned instead of building the
 * nested objects decodeUffdMsgs() returns, so a fault costs one object (the Fault) and no more.
 * Two sets of readers: over the bytes themselves (events, which are rare), and over a DataView
 * (the read loop's fault fields where the host is not little-endian; on a little-endian host it
 * reads them as 32-bit words of its buffer, which is off V8's heap: see reader.ts).
 * test/msg.test.ts checks both against decodeUffdMsgs.
 */

/** The host stores a 32-bit word least significant byte first (so a Uint32Array reads uffd_msg's little-endian words). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
export { UFFD_MSG_SIZE } from "@uffd/kernel/uapi";

/** A little-endian u64 field as a number (user addresses and lengths stay below 2^53). */
export function u64(bytes: Uint8Array, offset: number): number {
  return u32(bytes, offset) + u32(bytes, offset + 4) * 0x1_0000_0000;
}

/** A little-endian u32 field. */
export function u32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}

/** u64() through a DataView. */
export function u64v(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

/** u32() through a DataView. */
export function u32v(view: DataView, offset: number): number {
  return view.getUint32(offset, true);
}
