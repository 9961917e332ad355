import { execFile } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { projectPath } from "../../paths.js";

const run = promisify(execFile);

/**
 * Builds the demo disk template from Debian packages only: the Debian kernel, busybox
 * and dropbear (downloaded with apt, unpacked without installing), an initramfs whose
 * init applies Trebuchet's NoCloud seed, and a small ext4 root disk.
 */
export const DEMO_TEMPLATE = "trebuchet-demo";
const INIT = projectPath("assets/demo-template/init");
/**
 * Bumped when what the template holds changes (its init, its modules): a template built
 * by an older Trebuchet is then built again. 2, 3: the agent (virtio_console, init's agent loop).
 */
export const DEMO_TEMPLATE_VERSION = 3;

/** Drivers the guest needs: virtio on microvm (mmio) and q35 (pci), disks, the agent's serial port, the seed's ISO, ext4, the power button. */
const MODULES = [
  "virtio_mmio",
  "virtio_pci",
  "virtio_net",
  "virtio_blk",
  "virtio_console",
  "isofs",
  "crc32c_generic",
  "ext4",
  "button",
  "evdev",
];

export interface DemoTemplateFiles {
  directory: string;
  kernel: string;
  initrd: string;
  image: string;
  /** Holds DEMO_TEMPLATE_VERSION. */
  version: string;
}

export function demoTemplateFiles(templatesDir: string): DemoTemplateFiles {
  const directory = join(templatesDir, DEMO_TEMPLATE);
  return {
    directory,
    kernel: join(directory, "vmlinuz"),
    initrd: join(directory, "initrd.img"),
    image: join(directory, "root.qcow2"),
    version: join(directory, "template-version"),
  };
}

export function demoTemplateExists(templatesDir: string): boolean {
  const files = demoTemplateFiles(templatesDir);
  if (![files.kernel, files.initrd, files.image].every((f) => existsSync(f))) return false;
  try {
    return readFileSync(files.version, "utf8").trim() === String(DEMO_TEMPLATE_VERSION);
  } catch {
    return false;
  }
}

/** The `depends=` of a kernel module, read from its .modinfo strings. */
function moduleDependencies(file: string): string[] {
  const text = readFileSync(file).toString("latin1");
  const match = /\0depends=([^\0]*)\0/.exec(text);
  return match?.[1] ? match[1].split(",").filter(Boolean) : [];
}

function indexModules(root: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ko")) index.set(entry.name.slice(0, -3).replace(/-/g, "_"), path);
    }
  };
  walk(root);
  return index;
}

/** Modules in load order: every module after the ones it depends on. */
export function loadOrder(wanted: string[], dependencies: (name: string) => string[]): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (name: string) => {
    if (order.includes(name) || visiting.has(name)) return;
    visiting.add(name);
    for (const dependency of dependencies(name)) visit(dependency.replace(/-/g, "_"));
    order.push(name);
  };
  wanted.forEach(visit);
  return order;
}

async function kernelPackage(): Promise<string> {
  const { stdout } = await run("apt-cache", ["depends", "linux-image-amd64"]);
  const name = /Depends: (linux-image-[0-9][^\s]*)/.exec(stdout)?.[1];
  if (!name) throw new Error("apt does not know linux-image-amd64: run apt-get update");
  return name;
}

/** Builds the template into `templatesDir/trebuchet-demo`, replacing what was there only when it succeeds. */
export async function buildDemoTemplate(
  templatesDir: string,
  log: (line: string) => void = () => undefined,
): Promise<DemoTemplateFiles> {
  const files = demoTemplateFiles(templatesDir);
  const work = mkdtempSync(join(tmpdir(), "trebuchet-template-"));
  try {
    let kernel: string;
    try {
      kernel = await kernelPackage();
    } catch {
      log("updating apt package lists");
      await run("apt-get", ["update", "-qq"]);
      kernel = await kernelPackage();
    }
    const packages = [kernel, "busybox-static", "dropbear-bin", "libtomcrypt1", "libtommath1"];
    log(`downloading ${packages.join(", ")} (apt)`);
    const debs = join(work, "debs");
    mkdirSync(debs);
    await run("apt-get", ["download", ...packages], { cwd: debs, maxBuffer: 16 * 1024 * 1024 });
    const unpacked = join(work, "unpacked");
    for (const deb of readdirSync(debs)) await run("dpkg-deb", ["-x", join(debs, deb), unpacked]);

    log("assembling the initramfs");
    const root = join(work, "initramfs");
    for (const dir of [
      "bin",
      "sbin",
      "usr/bin",
      "usr/sbin",
      "etc",
      "root",
      "proc",
      "sys",
      "dev",
      "tmp",
      "lib/modules",
      "mnt",
    ]) {
      mkdirSync(join(root, dir), { recursive: true });
    }
    copyFileSync(join(unpacked, "bin/busybox"), join(root, "bin/busybox"));
    copyFileSync(join(unpacked, "usr/sbin/dropbear"), join(root, "usr/sbin/dropbear"));
    copyFileSync(join(unpacked, "usr/bin/dropbearkey"), join(root, "usr/bin/dropbearkey"));
    const libraryPath = [
      join(unpacked, "usr/lib/x86_64-linux-gnu"),
      join(unpacked, "lib/x86_64-linux-gnu"),
    ].join(":");
    for (const binary of ["usr/sbin/dropbear", "usr/bin/dropbearkey"]) {
      const { stdout } = await run("ldd", [join(root, binary)], {
        env: { ...process.env, LD_LIBRARY_PATH: libraryPath },
      });
      for (const line of stdout.split("\n")) {
        const library = /=> (\/\S+)|^\s*(\/\S+)/.exec(line);
        const source = library?.[1] ?? library?.[2];
        if (!source) continue;
        const target = source.startsWith(unpacked) ? source.slice(unpacked.length) : source;
        mkdirSync(join(root, dirname(target)), { recursive: true });
        copyFileSync(source, join(root, target));
      }
    }
    chmodSync(join(root, "usr/sbin/dropbear"), 0o755);
    chmodSync(join(root, "usr/bin/dropbearkey"), 0o755);

    const version = readdirSync(join(unpacked, "lib/modules"))[0]!;
    const modules = indexModules(join(unpacked, "lib/modules", version));
    const order = loadOrder(MODULES, (name) => {
      const path = modules.get(name);
      return path ? moduleDependencies(path) : [];
    }).filter((name) => modules.has(name));
    for (const name of order) copyFileSync(modules.get(name)!, join(root, "lib/modules", `${name}.ko`));
    writeFileSync(join(root, "lib/modules/load-order"), order.map((n) => `${n}.ko`).join("\n") + "\n");

    writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    writeFileSync(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o600 });
    writeFileSync(join(root, "etc/group"), "root:x:0:\n");
    writeFileSync(join(root, "etc/shells"), "/bin/sh\n");
    writeFileSync(join(root, "etc/motd"), "Trebuchet demo template\n");
    copyFileSync(INIT, join(root, "init"));
    chmodSync(join(root, "init"), 0o755);

    const staging = join(work, "template");
    mkdirSync(staging);
    await run("sh", [
      "-c",
      `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -6 > "${join(staging, "initrd.img")}"`,
    ]);
    copyFileSync(join(unpacked, "boot", `vmlinuz-${version}`), join(staging, "vmlinuz"));
    writeFileSync(join(staging, "template-version"), `${DEMO_TEMPLATE_VERSION}\n`);

    log("making the root disk");
    const rootDisk = join(work, "rootdisk");
    mkdirSync(join(rootDisk, "etc"), { recursive: true });
    writeFileSync(join(rootDisk, "etc/trebuchet-template"), `trebuchet-demo\nkernel ${version}\n`);
    await run("mke2fs", [
      "-q",
      "-t",
      "ext4",
      "-L",
      "trebuchet-root",
      "-d",
      rootDisk,
      join(work, "root.raw"),
      "64M",
    ]);
    await run("qemu-img", [
      "convert",
      "-q",
      "-f",
      "raw",
      "-O",
      "qcow2",
      join(work, "root.raw"),
      join(staging, "root.qcow2"),
    ]);

    mkdirSync(templatesDir, { recursive: true });
    // VMs' system disks are overlays on the root image: an existing one stays as it is
    // (a rebuild changes the kernel, the initramfs and the version only).
    if (existsSync(files.image)) rmSync(join(staging, "root.qcow2"));
    for (const file of [files.kernel, files.initrd, files.version]) rmSync(file, { force: true });
    cpSync(staging, files.directory, { recursive: true });
    log(`demo template ready in ${files.directory} (kernel ${version})`);
    return files;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
