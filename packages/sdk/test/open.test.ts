/**
 * Opening: the API handshake and feature probing folded in, and clear errors when a feature or
 * mode is unavailable. References: docs/linux-rules.md §1.1 (creation, EPERM before flags),
 * §1.3 (features; EVENT_FORK needs CAP_SYS_PTRACE; a failed API leaves the ctx uninitialised),
 * §1.4 (register ioctls masks), §2.2 (register errors); docs/handler-survey.md §3.D (ltp#1289: probe at run
 * time; criu#3035: suggest the sysctl on EPERM).
 */
import { describe, expect, it } from "vitest";
import { ErrnoError, Kernel } from "@uffd/kernel";
import { MAP_SHARED } from "@uffd/kernel/uapi";
import { DEFAULT_OPTIONAL_FEATURES, FeatureUnavailableError, ModeUnavailableError, UffdError, Userfaultfd } from "@uffd/sdk";
import { anon, PAGE_SIZE, RW, setup, sharedAnon } from "./helpers.ts";

describe("Userfaultfd.open", () => {
  it("does the handshake and enables the default optional features a root caller may have", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    expect([...uffd.features].sort()).toEqual([...DEFAULT_OPTIONAL_FEATURES].sort());
    // UFFDIO_API reports everything 6.18 offers (0x1ffff): all 17 features.
    expect(uffd.supportedFeatures.size).toBe(17);
    await uffd.close();
    k.checkInvariants();
  });

  it("a required feature the caller may not have fails with FeatureUnavailableError naming the capability", async () => {
    const k = new Kernel({ unprivilegedUserfaultfd: true });
    const p = k.spawn({ uid: 1000 });
    const err = await Userfaultfd.open(p, { features: ["event-fork"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FeatureUnavailableError);
    expect(err).toMatchObject({ reason: "feature-unavailable", features: ["event-fork"], cause: { code: "EPERM" } });
    expect((err as Error).message).toContain("event-fork (needs CAP_SYS_PTRACE)");
  });

  it("an optional feature the caller may not have is dropped, the rest kept", async () => {
    const k = new Kernel({ unprivilegedUserfaultfd: true });
    const p = k.spawn({ uid: 1000 });
    const uffd = await Userfaultfd.open(p);
    expect(uffd.has("event-fork")).toBe(false);
    expect(uffd.has("event-remove")).toBe(true);
    expect(uffd.has("thread-id")).toBe(true);
    await uffd.close();
  });

  it("EPERM for kernel-mode faults explains CAP_SYS_PTRACE, the sysctl and userModeOnly (linux-rules §1.1)", async () => {
    const k = new Kernel();
    const p = k.spawn({ uid: 1000 });
    const err = await Userfaultfd.open(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UffdError);
    expect(err).toMatchObject({ reason: "permission", cause: { code: "EPERM", syscall: "userfaultfd" } });
    expect((err as Error).message).toMatch(/CAP_SYS_PTRACE.*unprivileged_userfaultfd.*userModeOnly/);
    const umo = await Userfaultfd.open(p, { userModeOnly: true, optionalFeatures: [] });
    expect(umo.features.size).toBe(0);
    await umo.close();
  });

  it("via: 'dev' does not fall back: /dev/userfaultfd is root-only (EACCES)", async () => {
    const k = new Kernel({ unprivilegedUserfaultfd: true });
    const p = k.spawn({ uid: 1000 });
    await expect(Userfaultfd.open(p, { via: "dev" })).rejects.toMatchObject({ code: "EACCES" });
    const viaSyscall = await Userfaultfd.open(p, { via: "auto", userModeOnly: true });
    expect(viaSyscall.fd).toBeGreaterThanOrEqual(0);
    await viaSyscall.close();
  });

  it("an unknown feature name is a TypeError before any syscall", async () => {
    const { p } = setup();
    await expect(Userfaultfd.open(p, { features: ["no-such" as never] })).rejects.toThrow(TypeError);
  });
});

describe("register", () => {
  it("returns the kernel's ioctls mask (0x13c for MISSING on anon, 0x1bc for MINOR on shmem, linux-rules §1.4)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 2);
    const s = await sharedAnon(p, 2);
    expect((await uffd.register(a, 2 * PAGE_SIZE, "missing")).ioctls).toBe(0x13cn);
    expect((await uffd.register(s, 2 * PAGE_SIZE, ["minor"])).ioctls).toBe(0x1bcn);
    expect(uffd.ranges).toEqual([
      { start: s, end: s + 2 * PAGE_SIZE, modes: ["minor"], offset: 0 },
      { start: a, end: a + 2 * PAGE_SIZE, modes: ["missing"], offset: 0 },
    ].sort((x, y) => x.start - y.start));
    await uffd.close();
    k.checkInvariants();
  });

  it("MINOR on private anonymous memory is ModeUnavailableError saying what memory is needed (EINVAL, linux-rules §2.2 9a)", async () => {
    const { p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    const err = await uffd.register(a, PAGE_SIZE, "minor").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModeUnavailableError);
    expect(err).toMatchObject({ modes: ["minor"], cause: { code: "EINVAL" } });
    expect((err as Error).message).toContain("minor faults need shmem memory");
    expect(uffd.ranges).toEqual([]);
    await uffd.close();
  });

  it("a range with nothing mapped is ModeUnavailableError (EINVAL, linux-rules §2.2 7)", async () => {
    const { p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await p.munmap(a, PAGE_SIZE);
    await expect(uffd.register(a, PAGE_SIZE, "missing")).rejects.toThrow(/nothing is mapped/);
    await uffd.close();
  });

  it("a range another userfaultfd registered is ModeUnavailableError (EBUSY, linux-rules §2.2 9d)", async () => {
    const { p } = setup();
    const one = await Userfaultfd.open(p);
    const two = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    await one.register(a, PAGE_SIZE, "missing");
    await expect(two.register(a, PAGE_SIZE, "missing")).rejects.toMatchObject({ reason: "mode-unavailable", cause: { code: "EBUSY" } });
    await one.close();
    await two.close();
  });

  it("all three modes on a shared memfd mapping: ioctls 0x1fc (linux-rules §1.4)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const fd = await p.memfdCreate("guest");
    await p.ftruncate(fd, PAGE_SIZE);
    const a = await p.mmap(0, PAGE_SIZE, RW, MAP_SHARED, fd, 0);
    const r = await uffd.register(a, PAGE_SIZE, ["missing", "wp", "minor"]);
    expect(r).toMatchObject({ start: a, end: a + PAGE_SIZE, modes: ["missing", "wp", "minor"], ioctls: 0x1fcn });
    await uffd.close();
    k.checkInvariants();
  });

  it("holes inside the range are skipped, as Linux does (linux-rules §2.2: vma–hole–vma is OK)", async () => {
    const { k, p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 3);
    await p.munmap(a + PAGE_SIZE, PAGE_SIZE);
    await uffd.register(a, 3 * PAGE_SIZE, "missing");
    expect(uffd.ranges.map((r) => [r.start - a, r.end - a, r.offset])).toEqual([
      [0, PAGE_SIZE, 0],
      [2 * PAGE_SIZE, 3 * PAGE_SIZE, 2 * PAGE_SIZE],
    ]);
    await uffd.close();
    k.checkInvariants();
  });

  it("kernel errors the SDK has nothing to add to stay ErrnoError (unaligned start: EINVAL)", async () => {
    const { p } = setup();
    const uffd = await Userfaultfd.open(p);
    const a = await anon(p, 1);
    const err = await uffd.register(a + 1, PAGE_SIZE, "missing").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrnoError);
    expect(err).toMatchObject({ code: "EINVAL", syscall: "ioctl" });
    await uffd.close();
  });
  it("handler options are checked up front: a batch, retry count or deadline that is not a sane number is a RangeError", async () => {
    const { k, p } = setup();
    for (const bad of [{ batch: 0 }, { batch: 1.5 }, { batch: Number.NaN }, { retries: -1 }, { deadline: { wallMs: -1 } }, { deadline: { virtualMs: Infinity } }, { trace: { eventsMax: 0 } }]) {
      await expect(Userfaultfd.open(p, bad), JSON.stringify(bad)).rejects.toThrow(RangeError);
    }
    const uffd = await Userfaultfd.open(p, { batch: 1, retries: 0, deadline: { wallMs: 0, virtualMs: null } });
    await uffd.close();
    k.checkInvariants();
  });
});
