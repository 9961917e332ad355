import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import type { Accelerator } from "./args.js";

/**
 * KVM only when a real guest boots with it: /dev/kvm can exist and still hang a guest
 * (nested virtualisation off), so the probe boots the given kernel under KVM and waits
 * for its first console line. Anything else means TCG.
 */
export async function probeAccelerator(
  kernel: string | undefined,
  timeoutMs = 4000,
): Promise<{ accelerator: Accelerator; reason: string }> {
  if (process.env.TREBUCHET_ACCEL === "tcg" || process.env.TREBUCHET_ACCEL === "kvm") {
    return { accelerator: process.env.TREBUCHET_ACCEL, reason: "set by TREBUCHET_ACCEL" };
  }
  if (!existsSync("/dev/kvm")) return { accelerator: "tcg", reason: "no /dev/kvm" };
  if (!kernel || !existsSync(kernel)) return { accelerator: "tcg", reason: "no kernel to probe KVM with" };
  const output = await new Promise<string>((resolve) => {
    const child = execFile(
      "qemu-system-x86_64",
      [
        "-accel",
        "kvm",
        "-M",
        "microvm",
        "-cpu",
        "host",
        "-m",
        "64",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        kernel,
        "-append",
        "console=ttyS0 panic=-1",
        "-serial",
        "stdio",
      ],
      { timeout: timeoutMs, killSignal: "SIGKILL" },
      (_error, stdout) => resolve(String(stdout)),
    );
    child.stdin?.end();
  });
  return /Linux version/.test(output)
    ? { accelerator: "kvm", reason: "a probe guest booted under KVM" }
    : { accelerator: "tcg", reason: "/dev/kvm exists but a probe guest did not boot under KVM" };
}

/** The host's TSC rate in kHz (sysfs when the kernel exports it, else cpu0's MHz), or undefined. */
export function hostTscKhz(): number | undefined {
  try {
    const khz = Number(readFileSync("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "utf8").trim());
    if (Number.isFinite(khz) && khz > 0) return Math.round(khz);
  } catch {
    // not exported by this kernel
  }
  try {
    const mhz = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
    if (mhz && Number(mhz) > 0) return Math.round(Number(mhz) * 1000);
  } catch {
    // no /proc
  }
  return undefined;
}
