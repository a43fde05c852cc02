/**
 * struct uffd_msg (32 bytes, packed) as read(2) returns it from a userfaultfd
 * (include/uapi/linux/userfaultfd.h). Offsets: event u8 @0, reserved @1..7, arg union @8:
 * pagefault {flags u64 @8, address u64 @16, ptid u32 @24}; fork {ufd u32 @8};
 * remap {from @8, to @16, len @24}; remove/unmap {start @8, end @16}.
 */
import { UFFD_EVENT_FORK, UFFD_EVENT_PAGEFAULT, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP } from "./userfaultfd.ts";

/** sizeof(struct uffd_msg): every message read(2) returns from a userfaultfd is 32 bytes. */
export const UFFD_MSG_SIZE = 32;

/**
 * A decoded struct uffd_msg, by event: UFFD_EVENT_PAGEFAULT (`flags`: UFFD_PAGEFAULT_FLAG_*,
 * `address`, `feat.ptid` with UFFD_FEATURE_THREAD_ID), UFFD_EVENT_FORK (`ufd`: the child's
 * userfaultfd), UFFD_EVENT_REMAP (`from`, `to`, `len`), UFFD_EVENT_REMOVE and UFFD_EVENT_UNMAP
 * (`start`, `end` exclusive).
 */
export type UffdMsg =
  | {
      /** UFFD_EVENT_PAGEFAULT. */
      event: 0x12;
      /** The message body. */
      arg: {
        /** The userfault. */
        pagefault: {
          /** UFFD_PAGEFAULT_FLAG_* bits. */
          flags: number;
          /** The faulting address (the page start unless UFFD_FEATURE_EXACT_ADDRESS). */
          address: number;
          /** Feature-dependent fields. */
          feat: {
            /** The faulting thread's id with UFFD_FEATURE_THREAD_ID, else 0. */
            ptid: number;
          };
        };
      };
    }
  | {
      /** UFFD_EVENT_FORK. */
      event: 0x13;
      /** The message body. */
      arg: {
        /** The fork. */
        fork: {
          /** The child's userfaultfd, installed in the reader's fd table. */
          ufd: number;
        };
      };
    }
  | {
      /** UFFD_EVENT_REMAP. */
      event: 0x14;
      /** The message body. */
      arg: {
        /** The move. */
        remap: {
          /** Old start address. */
          from: number;
          /** New start address. */
          to: number;
          /** Length in bytes. */
          len: number;
        };
      };
    }
  | {
      /** UFFD_EVENT_REMOVE (0x15) or UFFD_EVENT_UNMAP (0x16). */
      event: 0x15 | 0x16;
      /** The message body. */
      arg: {
        /** The range removed or unmapped. */
        remove: {
          /** Start address. */
          start: number;
          /** End address (exclusive). */
          end: number;
        };
      };
    };

function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Decodes packed uffd_msg records as read(2) returns them from a userfaultfd. */
export function decodeUffdMsgs(bytes: Uint8Array): UffdMsg[] {
  if (bytes.length % UFFD_MSG_SIZE !== 0) {
    throw new RangeError(`uffd_msg records are ${UFFD_MSG_SIZE} bytes; got ${bytes.length} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const msgs: UffdMsg[] = [];
  for (let off = 0; off < bytes.length; off += UFFD_MSG_SIZE) {
    const event = view.getUint8(off);
    switch (event) {
      case UFFD_EVENT_PAGEFAULT:
        msgs.push({
          event,
          arg: { pagefault: { flags: getU64(view, off + 8), address: getU64(view, off + 16), feat: { ptid: view.getUint32(off + 24, true) } } },
        });
        break;
      case UFFD_EVENT_FORK:
        msgs.push({ event, arg: { fork: { ufd: view.getUint32(off + 8, true) } } });
        break;
      case UFFD_EVENT_REMAP:
        msgs.push({ event, arg: { remap: { from: getU64(view, off + 8), to: getU64(view, off + 16), len: getU64(view, off + 24) } } });
        break;
      case UFFD_EVENT_REMOVE:
      case UFFD_EVENT_UNMAP:
        msgs.push({ event, arg: { remove: { start: getU64(view, off + 8), end: getU64(view, off + 16) } } });
        break;
      default:
        throw new RangeError(`unknown uffd_msg event 0x${event.toString(16)} at offset ${off}`);
    }
  }
  return msgs;
}

/** Encodes one message into `out` at `offset` (the kernel side of read(2)); the record is zeroed first, as msg_init() does. */
export function encodeUffdMsg(msg: UffdMsg, out: Uint8Array, offset: number): void {
  out.fill(0, offset, offset + UFFD_MSG_SIZE);
  const view = new DataView(out.buffer, out.byteOffset + offset, UFFD_MSG_SIZE);
  view.setUint8(0, msg.event);
  if (msg.event === UFFD_EVENT_PAGEFAULT) {
    const pf = msg.arg.pagefault;
    setU64(view, 8, pf.flags);
    setU64(view, 16, pf.address);
    view.setUint32(24, pf.feat.ptid, true);
  } else if (msg.event === UFFD_EVENT_FORK) {
    view.setUint32(8, msg.arg.fork.ufd, true);
  } else if (msg.event === UFFD_EVENT_REMAP) {
    setU64(view, 8, msg.arg.remap.from);
    setU64(view, 16, msg.arg.remap.to);
    setU64(view, 24, msg.arg.remap.len);
  } else {
    setU64(view, 8, msg.arg.remove.start);
    setU64(view, 16, msg.arg.remove.end);
  }
}
