/**
 * A simulated Linux 6.18 kernel (memory management and userfaultfd): `Kernel`, `Process`,
 * `Thread`, the errors and the procfs views. Constants, ioctl structs and the message codec live
 * in `@uffd/kernel/uapi`.
 *
 * @module @uffd/kernel
 */
export { Kernel, type KernelOptions, type SpawnOptions } from "./kernel/kernel.ts";
export {
  DEFAULT_RELEASE, KERNEL_RELEASES, HISTORY_RELEASES, ALL_RELEASES, COW_ERAS, COW_FIXES, UFFD_FEATURE_SINCE, releaseProfile,
  type KernelRelease, type HistoryRelease, type AnyRelease, type CowEra, type CowPolicy, type MmRules, type CowFix, type CowFixes, type ReleaseProfile, type Utsname,
} from "./kernel/release.ts";
export type { Preemption, SchedPoint, SchedEvent } from "./kernel/sched.ts";
export { Process, Thread, type PollFd, type WaitStatus, type UserBuffer } from "./kernel/process.ts";
export type { PagemapEntry, VmaInfo, KPageFlags } from "./fs/procfs.ts";
export type { PinnedBuffer } from "./mm/gup.ts";
export { ErrnoError, SignalError, KernelBug, setErrnoStackTraces } from "./uapi/errno.ts";
/** The process-wide pool of host memory chunks that kernels reuse (timing and host memory only). */
export { setFramePoolLimit, framePoolBytes, type FrameGenerator, type FrameStoreKind, type FrameStoreStats } from "./mm/folio.ts";
/** A blocked call of a process that was killed meanwhile rejects with this (the call never returns in Linux). */
export { DeadTaskError } from "./kernel/access.ts";
/** The kernel's seeded PRNG (sfc32 via splitmix32), for tools that want a seed to mean the same thing. */
export { Prng } from "./lib/prng.ts";
export { decodeUffdMsgs } from "./uapi/msg.ts";
export type { UffdMsg } from "./uapi/msg.ts";
export type {
  UffdioApi,
  UffdioRange,
  UffdioRegister,
  UffdioCopy,
  UffdioZeropage,
  UffdioWriteprotect,
  UffdioContinue,
  UffdioPoison,
  UffdioMove,
} from "./uapi/userfaultfd.ts";
