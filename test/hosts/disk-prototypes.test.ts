/** Disk prototypes against the real qemu-img: a copy is the image `qemu-img create` would make. */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskPrototypes } from "../../src/hosts/qemu/disk-prototypes.js";

const exec = promisify(execFile);
const info = async (file: string) =>
  JSON.parse((await exec("qemu-img", ["info", "--output", "json", file])).stdout) as Record<string, unknown>;

describe("disk prototypes", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "trebuchet-prototypes-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("copies blank disks and template overlays that are byte for byte what qemu-img create makes", async () => {
    const template = join(dir, "template.qcow2");
    await exec("qemu-img", ["create", "-q", "-f", "qcow2", template, "1G"]);
    const prototypes = new DiskPrototypes(join(dir, "cache"));
    await prototypes.copy({ sizeInGb: 3, backing: null }, join(dir, "blank-a.qcow2"));
    await prototypes.copy({ sizeInGb: 3, backing: null }, join(dir, "blank-b.qcow2"));
    await prototypes.copy({ sizeInGb: 5, backing: template }, join(dir, "overlay.qcow2"));
    await exec("qemu-img", ["create", "-q", "-f", "qcow2", join(dir, "direct.qcow2"), "3G"]);

    expect(readFileSync(join(dir, "blank-a.qcow2"))).toEqual(readFileSync(join(dir, "direct.qcow2")));
    expect(readFileSync(join(dir, "blank-b.qcow2"))).toEqual(readFileSync(join(dir, "direct.qcow2")));
    expect(await info(join(dir, "overlay.qcow2"))).toMatchObject({
      "virtual-size": 5 * 1024 ** 3,
      "backing-filename": template,
      "backing-filename-format": "qcow2",
    });
    // Two shapes, two prototypes: made once each.
    expect(readdirSync(join(dir, "cache"))).toHaveLength(2);
    // Copies are independent files: writing one leaves the other and the prototype alone.
    await exec("qemu-io", ["-c", "write -P 0xab 0 64k", join(dir, "blank-a.qcow2")]);
    expect(readFileSync(join(dir, "blank-a.qcow2"))).not.toEqual(readFileSync(join(dir, "direct.qcow2")));
    expect(readFileSync(join(dir, "blank-b.qcow2"))).toEqual(readFileSync(join(dir, "direct.qcow2")));
  });

  it("makes a new prototype when the template image is replaced, and never overwrites a disk", async () => {
    const template = join(dir, "template.qcow2");
    await exec("qemu-img", ["create", "-q", "-f", "qcow2", template, "1G"]);
    const prototypes = new DiskPrototypes(join(dir, "cache"));
    await prototypes.copy({ sizeInGb: 2, backing: template }, join(dir, "one.qcow2"));
    rmSync(template);
    await exec("qemu-img", ["create", "-q", "-f", "qcow2", template, "2G"]);
    await prototypes.copy({ sizeInGb: 2, backing: template }, join(dir, "two.qcow2"));
    expect(readdirSync(join(dir, "cache"))).toHaveLength(2);

    writeFileSync(join(dir, "taken.qcow2"), "data");
    await expect(prototypes.copy({ sizeInGb: 2, backing: null }, join(dir, "taken.qcow2"))).rejects.toThrow(
      /creating disk/,
    );
    expect(readFileSync(join(dir, "taken.qcow2"), "utf8")).toBe("data");
  });
});
