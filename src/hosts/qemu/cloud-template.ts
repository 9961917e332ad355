import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runTool } from "./run-tool.js";

export const CLOUD_TEMPLATE = "debian-12-cloud";
/** The image's virtual size: a spec's system disk may not be smaller (cloud-init grows it when larger). */
const CLOUD_TEMPLATE_SIZE_IN_GB = 2;
const BOOT_PARTITION_MB = 128;
const ROOT_LABEL = "trebuchet-root";

/** What goes into the guest, besides Debian's essential packages. */
const GUEST_PACKAGES = [
  "linux-image-cloud-amd64",
  "systemd-sysv",
  "udev",
  "cloud-init",
  "cloud-guest-utils",
  "openssh-server",
  "ifupdown",
  "netbase",
  "iproute2",
  "isc-dhcp-client",
  // Applies the interfaces' dns-nameservers (cloud-init's network-config) to /etc/resolv.conf.
  "resolvconf",
];

export interface CloudTemplateFiles {
  directory: string;
  image: string;
}

export function cloudTemplateFiles(templatesDir: string): CloudTemplateFiles {
  const directory = join(templatesDir, CLOUD_TEMPLATE);
  return { directory, image: join(directory, "disk.qcow2") };
}

export function cloudTemplateExists(templatesDir: string): boolean {
  return existsSync(cloudTemplateFiles(templatesDir).image);
}

/** Template building runs long (mmdebstrap downloads and installs a system). */
const run = (file: string, args: string[]) =>
  runTool(file, args, `${file} ${args[0] ?? ""}`.trim(), { timeoutMs: 30 * 60_000 });

/**
 * Builds a Debian 12 cloud image, the way cloud providers ship them, from Debian packages
 * only: mmdebstrap makes the root file system (kernel, systemd, cloud-init, OpenSSH) from
 * the machine's apt sources; the disk gets an MBR with syslinux on a FAT boot partition
 * (so SeaBIOS boots it) and an ext4 root made with `mke2fs -d`, so nothing is mounted.
 * Guests configure themselves from the NoCloud seed with cloud-init, like any cloud image.
 */
export async function buildCloudTemplate(
  templatesDir: string,
  log: (line: string) => void = () => undefined,
): Promise<CloudTemplateFiles> {
  const files = cloudTemplateFiles(templatesDir);
  const work = mkdtempSync(join(tmpdir(), "trebuchet-cloud-"));
  try {
    const root = join(work, "root");
    // The machine's own mirrors (which may be the only ones it can reach); mmdebstrap's default otherwise.
    const sources = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"].find(
      (file) => existsSync(file) && statSync(file).size > 0,
    );
    log(`installing Debian 12 with ${GUEST_PACKAGES.join(", ")} (mmdebstrap)`);
    await run("mmdebstrap", [
      "--variant=apt",
      "--quiet",
      `--include=${GUEST_PACKAGES.join(",")}`,
      "bookworm",
      root,
      ...(sources ? [sources] : []),
    ]);
    configureGuest(root);

    log("making the disk: syslinux boot partition, ext4 root");
    const boot = readdirSync(join(root, "boot"));
    const kernel = boot.find((f) => f.startsWith("vmlinuz-"));
    const initrd = boot.find((f) => f.startsWith("initrd.img-"));
    if (!kernel || !initrd) throw new Error("the guest has no kernel or initramfs in /boot");

    const bootImage = join(work, "boot.img");
    await run("mkfs.vfat", ["-C", "-n", "BOOT", bootImage, String(BOOT_PARTITION_MB * 1024)]);
    writeFileSync(
      join(work, "syslinux.cfg"),
      [
        "DEFAULT linux",
        "PROMPT 0",
        "TIMEOUT 0",
        "LABEL linux",
        "  KERNEL /vmlinuz",
        "  INITRD /initrd.img",
        `  APPEND root=LABEL=${ROOT_LABEL} ro console=ttyS0 quiet`,
        "",
      ].join("\n"),
    );
    for (const [source, name] of [
      [join(root, "boot", kernel), "vmlinuz"],
      [join(root, "boot", initrd), "initrd.img"],
      [join(work, "syslinux.cfg"), "syslinux.cfg"],
    ] as const) {
      await run("mcopy", ["-i", bootImage, source, `::/${name}`]);
    }
    await run("syslinux", ["--install", bootImage]);

    const totalMb = CLOUD_TEMPLATE_SIZE_IN_GB * 1024;
    const rootMb = totalMb - BOOT_PARTITION_MB - 1;
    const rootImage = join(work, "root.img");
    await run("mke2fs", ["-q", "-t", "ext4", "-L", ROOT_LABEL, "-d", root, rootImage, `${rootMb}M`]);

    const disk = join(work, "disk.raw");
    await run("truncate", ["-s", `${totalMb}M`, disk]);
    const layout = join(work, "layout");
    writeFileSync(
      layout,
      `label: dos\nstart=1MiB, size=${BOOT_PARTITION_MB}MiB, type=c, bootable\nstart=${BOOT_PARTITION_MB + 1}MiB, type=83\n`,
    );
    await run("sh", ["-c", `sfdisk --quiet "${disk}" < "${layout}"`]);
    const mbr = ["/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/SYSLINUX/mbr.bin"].find((f) => existsSync(f));
    if (!mbr) throw new Error("syslinux's mbr.bin is missing (apt-get install syslinux-common)");
    await run("dd", [`if=${mbr}`, `of=${disk}`, "bs=440", "count=1", "conv=notrunc", "status=none"]);
    await run("dd", [`if=${bootImage}`, `of=${disk}`, "bs=1M", "seek=1", "conv=notrunc", "status=none"]);
    await run("dd", [
      `if=${rootImage}`,
      `of=${disk}`,
      "bs=1M",
      `seek=${BOOT_PARTITION_MB + 1}`,
      "conv=notrunc",
      "status=none",
    ]);

    const staging = join(work, "template");
    mkdirSync(staging);
    await run("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", disk, join(staging, "disk.qcow2")]);
    mkdirSync(templatesDir, { recursive: true });
    rmSync(files.directory, { recursive: true, force: true });
    cpSync(staging, files.directory, { recursive: true });
    const mb = Math.round(statSync(files.image).size / 1024 / 1024);
    log(`cloud template ready in ${files.directory} (${kernel}, ${mb} MB)`);
    return files;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What makes the installed system a cloud image: identity left to first boot, cloud-init told where to look. */
function configureGuest(root: string): void {
  writeFileSync(join(root, "etc/fstab"), `LABEL=${ROOT_LABEL} / ext4 errors=remount-ro 0 1\n`);
  writeFileSync(join(root, "etc/hostname"), "localhost\n");
  // mmdebstrap copies the build machine's resolver in; guests get theirs from their network.
  rmSync(join(root, "etc/resolv.conf"), { force: true });
  symlinkSync("../run/resolvconf/resolv.conf", join(root, "etc/resolv.conf"));
  // Every VM gets its own machine ID and SSH host keys on first boot (cloud-init makes the keys).
  writeFileSync(join(root, "etc/machine-id"), "");
  rmSync(join(root, "var/lib/dbus/machine-id"), { force: true });
  for (const name of readdirSync(join(root, "etc/ssh"))) {
    if (name.startsWith("ssh_host_")) rmSync(join(root, "etc/ssh", name));
  }
  mkdirSync(join(root, "etc/cloud/cloud.cfg.d"), { recursive: true });
  writeFileSync(
    join(root, "etc/cloud/cloud.cfg.d/90-trebuchet.cfg"),
    [
      "# Trebuchet hands guests a NoCloud seed (a disk labelled cidata); nothing else to probe.",
      "datasource_list: [ NoCloud, None ]",
      "# The image carries no locales package; C.UTF-8 is built into glibc.",
      "locale: C.UTF-8",
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(root, "etc/network/interfaces"),
    "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n",
  );
}
