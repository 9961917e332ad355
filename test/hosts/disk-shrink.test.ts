/** Offline disk shrinking against the real qemu-img, blkid and e2fsprogs. */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { shrinkImage } from "../../src/hosts/qemu/shrink.js";

const exec = promisify(execFile);
const GiB = 1024 ** 3;
const virtualSize = async (file: string) =>
  (
    JSON.parse((await exec("qemu-img", ["info", "--output", "json", file])).stdout) as {
      "virtual-size": number;
    }
  )["virtual-size"];

describe("shrinking a disk offline", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "trebuchet-shrink-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A qcow2 of `gb` GB made from a raw image `prepare` fills. */
  async function image(gb: number, prepare: (raw: string) => Promise<void>): Promise<string> {
    const raw = join(dir, "build.raw");
    await exec("truncate", ["-s", `${gb}G`, raw]);
    await prepare(raw);
    const qcow2 = join(dir, "disk.qcow2");
    await exec("qemu-img", ["convert", "-O", "qcow2", raw, qcow2]);
    rmSync(raw);
    return qcow2;
  }

  it("shrinks an ext4 filesystem with the disk, keeping its files", async () => {
    const content = join(dir, "content.txt");
    writeFileSync(content, "kept through the shrink\n");
    const disk = await image(3, async (raw) => {
      await exec("mkfs.ext4", ["-q", "-F", raw]);
      await exec("debugfs", ["-w", "-R", `write ${content} kept.txt`, raw]);
    });
    await shrinkImage(disk, 1);
    expect(await virtualSize(disk)).toBe(1 * GiB);
    const raw = join(dir, "check.raw");
    await exec("qemu-img", ["convert", "-O", "raw", disk, raw]);
    // The filesystem is clean, fits the disk, and still has the file.
    await exec("e2fsck", ["-f", "-n", raw]);
    const blocks = (await exec("dumpe2fs", ["-h", raw])).stdout;
    const count = Number(/Block count:\s+(\d+)/.exec(blocks)![1]);
    const size = Number(/Block size:\s+(\d+)/.exec(blocks)![1]);
    expect(count * size).toBeLessThanOrEqual(1 * GiB);
    expect((await exec("debugfs", ["-R", "cat kept.txt", raw])).stdout).toBe(readFileSync(content, "utf8"));
  });

  it("shrinks a disk that holds nothing, and refuses one written past the new end", async () => {
    const blank = await image(2, async () => {});
    await shrinkImage(blank, 1);
    expect(await virtualSize(blank)).toBe(1 * GiB);

    rmSync(blank);
    const written = await image(2, async (raw) => {
      await exec("qemu-io", ["-f", "raw", "-c", `write -P 0xab ${1.5 * GiB} 64k`, raw]);
    });
    await expect(shrinkImage(written, 1)).rejects.toThrow(/data beyond 1 GB/);
    expect(await virtualSize(written)).toBe(2 * GiB);
  });

  it("refuses a filesystem that does not fit and a partitioned disk, leaving each as it was", async () => {
    const full = await image(2, async (raw) => {
      await exec("mkfs.ext4", ["-q", "-F", raw]);
      const big = join(dir, "big.bin");
      // 1.1 GB of text: more than a 1 GB filesystem holds.
      await exec("sh", ["-c", `yes trebuchet | head -c 1100M > ${big}`]);
      await exec("debugfs", ["-w", "-R", `write ${big} big.bin`, raw]);
      rmSync(big);
    });
    await expect(shrinkImage(full, 1)).rejects.toThrow(/shrinking the disk's filesystem failed/);
    expect(await virtualSize(full)).toBe(2 * GiB);

    rmSync(full);
    const table = await image(
      2,
      (raw) =>
        new Promise<void>((resolve, reject) => {
          const child = execFile("sfdisk", ["-q", raw], (error) => (error ? reject(error) : resolve()));
          child.stdin!.end("label: dos\n,,83\n");
        }),
    );
    await expect(shrinkImage(table, 1)).rejects.toThrow(/dos partition table/);
    expect(await virtualSize(table)).toBe(2 * GiB);
  }, 120_000);
});
