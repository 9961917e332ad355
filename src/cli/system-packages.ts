import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

const exec = promisify(execFile);

/** A Debian package, and the command (or file) that shows it is installed. */
export interface SystemPackage {
  pkg: string;
  command?: string;
  file?: string;
}

/** What the demo and the demo template need on the machine. */
export const DEMO_PACKAGES: SystemPackage[] = [
  { command: "qemu-system-x86_64", pkg: "qemu-system-x86" },
  { command: "qemu-img", pkg: "qemu-utils" },
  { command: "genisoimage", pkg: "genisoimage" },
  { command: "cpio", pkg: "cpio" },
  { command: "ssh", pkg: "openssh-client" },
  { command: "ssh-keygen", pkg: "openssh-client" },
  { command: "ping", pkg: "iputils-ping" },
  { command: "ip", pkg: "iproute2" },
];

/** What building the Debian cloud template needs. */
export const CLOUD_TEMPLATE_PACKAGES: SystemPackage[] = [
  { command: "mmdebstrap", pkg: "mmdebstrap" },
  { command: "syslinux", pkg: "syslinux" },
  { file: "/usr/lib/syslinux/mbr/mbr.bin", pkg: "syslinux-common" },
  { command: "mcopy", pkg: "mtools" },
  { command: "mkfs.vfat", pkg: "dosfstools" },
  { command: "sfdisk", pkg: "fdisk" },
  { command: "mke2fs", pkg: "e2fsprogs" },
  { command: "qemu-img", pkg: "qemu-utils" },
];

const installed = (p: SystemPackage) =>
  p.file ? existsSync(p.file) : spawnSync("sh", ["-c", `command -v ${p.command}`]).status === 0;

/** Installs the missing ones with apt-get (root only; otherwise says what to install). */
export async function ensureSystemPackages(
  packages: SystemPackage[],
  log: (line: string) => void,
): Promise<void> {
  const missing = [...new Set(packages.filter((p) => !installed(p)).map((p) => p.pkg))];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0)
    throw new Error(
      `missing ${missing.join(", ")}: install them (apt-get install ${missing.join(" ")}) or run as root`,
    );
  log(`installing ${missing.join(", ")} (apt-get)`);
  await exec("apt-get", ["update", "-qq"], { maxBuffer: 64 * 1024 * 1024 });
  await exec("apt-get", ["install", "-y", "-qq", ...missing], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    maxBuffer: 64 * 1024 * 1024,
  });
}
