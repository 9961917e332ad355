/** The pure parts of the QEMU driver: command line, seed, names, the undo stack, module order. */
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { VmDefinition } from "../../src/hosts/driver.js";
import { agentMessage } from "../../src/hosts/qemu/agent.js";
import { bridgeName, HOTPLUG_PORTS, qemuArgs, tapName, throttling } from "../../src/hosts/qemu/args.js";
import { reconfiguredTaskName } from "../../src/lifecycle/tasks.js";
import { shapingCommands, unshapingCommands } from "../../src/hosts/qemu/network.js";
import { newId } from "../../src/store/index.js";
import { loadOrder } from "../../src/hosts/qemu/demo-template.js";
import { renderSeed } from "../../src/hosts/qemu/seed.js";
import { Reverter, withReverter } from "../../src/hosts/reverter.js";

const vm: VmDefinition = {
  id: "vm_AAAAAAAAAAAAAAAA",
  hostname: "web-01",
  memoryInMb: 1024,
  cpuCores: 2,
  template: { kind: "kernel", image: "/t/root.qcow2", kernel: "/t/vmlinuz", initrd: "/t/initrd.img" },
  disks: [
    { id: "disk_1", sizeInGb: 2, system: true },
    { id: "disk_2", sizeInGb: 1, system: false },
  ],
  interfaces: [
    {
      id: "vmnic_BBBBBBBBBBBBBBBB",
      mac: "52:aa:bb:cc:dd:ee",
      segment: "netw_CCCCCCCCCCCCCCCC",
      gatewayCidrs: ["192.0.2.1/24", "2001:db8:100::1/64"],
      addresses: [
        { address: "192.0.2.10", prefix: 24, version: 4, gateway: "192.0.2.1" },
        { address: "2001:db8:100::10", prefix: 64, version: 6, gateway: "2001:db8:100::1" },
      ],
    },
  ],
  dnsServers: ["192.0.2.1"],
  authorizedKeys: ["ssh-ed25519 AAAA a@b"],
  options: [{ key: "motd", value: "hello\nworld" }],
};
const paths = {
  directory: "/vms/x",
  disk: (id: string) => `/vms/x/${id}.qcow2`,
  seedIso: "/vms/x/seed.iso",
  agent: "/vms/x/agent.sock",
  console: "/vms/x/console.log",
  qmp: "/vms/x/qmp.sock",
  pid: "/vms/x/qemu.pid",
};

describe("QEMU command line", () => {
  it("boots kernel templates on microvm with virtio devices, QMP, a console file, daemonized", () => {
    const args = qemuArgs(vm, paths, "tcg", "tap", 2_596_118);
    const joined = args.join(" ");
    expect(joined).toContain("-machine microvm,acpi=on");
    expect(joined).toContain("-accel tcg -cpu max -smp 2 -m 1024");
    expect(joined).toContain("-kernel /t/vmlinuz");
    expect(joined).toContain("-initrd /t/initrd.img");
    expect(args[args.indexOf("-append") + 1]).toBe("console=ttyS0 quiet panic=-1 tsc_early_khz=2596118");
    expect(joined).toContain("-qmp unix:/vms/x/qmp.sock,server=on,wait=off");
    expect(joined).toContain("-chardev file,id=serial0,path=/vms/x/console.log,append=on");
    expect(joined).toContain("-daemonize");
    expect(joined).toContain("file=/vms/x/disk_1.qcow2,format=qcow2");
    expect(joined).toContain("file=/vms/x/seed.iso,format=raw,if=none,readonly=on");
    expect(joined).toContain(`tap,id=net0,ifname=${tapName(vm.interfaces[0]!.id)},script=no,downscript=no`);
    expect(joined).toContain("virtio-net-device,netdev=net0,mac=52:aa:bb:cc:dd:ee");
    expect(args[args.indexOf("-name") + 1]).toBe(
      "trebuchet-vm_AAAAAAAAAAAAAAAA,process=trebuchet-vm_AAAAAAAAAAAAAAAA",
    );
  });

  it("boots cloud images on q35 with PCI devices, KVM when probed, user networking as the fallback", () => {
    const joined = qemuArgs(
      { ...vm, template: { kind: "cloud", image: "/c.qcow2", kernel: null, initrd: null } },
      paths,
      "kvm",
      "user",
    ).join(" ");
    expect(joined).toContain("-machine q35");
    expect(joined).toContain("-accel kvm -cpu host");
    expect(joined).not.toContain("-kernel");
    expect(joined).toContain("virtio-blk-pci");
    expect(joined).toContain("-netdev user,id=net0");
  });

  it("gives kernel templates the agent's serial port, and disks their IO profile's limits", () => {
    const limited = {
      ...vm,
      disks: vm.disks.map((d) => ({ ...d, limits: { megabytesPerSecond: 200, iops: 5000 } })),
    };
    const joined = qemuArgs(limited, paths, "tcg", "tap").join(" ");
    expect(joined).toContain("-chardev socket,id=agent,path=/vms/x/agent.sock,server=on,wait=off");
    expect(joined).toContain(
      "-device virtio-serial-device -device virtserialport,chardev=agent,name=org.trebuchet.agent",
    );
    expect(joined).toContain(
      `cache=writeback,throttling.bps-total=${200 * 1024 * 1024},throttling.iops-total=5000`,
    );
    expect(joined).toContain(`drive=disk_1,id=disk_1-device`);
    const cloud = qemuArgs(
      { ...vm, template: { kind: "cloud", image: "/c.qcow2", kernel: null, initrd: null } },
      paths,
      "tcg",
      "tap",
    ).join(" ");
    expect(cloud).not.toContain("virtserialport");
    expect(throttling(undefined)).toBe("");
    expect(throttling({ megabytesPerSecond: null, iops: 100 })).toBe(",throttling.iops-total=100");
  });

  it("gives q35 machines hot-plug ports and puts their standalone disks on them; microvm has none", () => {
    const withStandalone = {
      ...vm,
      disks: [
        ...vm.disks,
        { id: "disk_3", sizeInGb: 3, system: false, existingPath: "/disks/a,b.qcow2" },
        { id: "disk_4", sizeInGb: 3, system: false, existingPath: "/disks/disk_4.qcow2" },
      ],
    };
    const cloud = qemuArgs(
      { ...withStandalone, template: { kind: "cloud", image: "/c.qcow2", kernel: null, initrd: null } },
      paths,
      "tcg",
      "tap",
    );
    const devices = cloud.filter((_, i) => cloud[i - 1] === "-device");
    expect(devices.filter((d) => d.startsWith("pcie-root-port"))).toEqual(
      Array.from(
        { length: HOTPLUG_PORTS },
        (_, i) => `pcie-root-port,id=hotplug${i},chassis=${i + 1},io-reserve=0`,
      ),
    );
    // The VM's own disks stay on the root bus (never detached); standalone ones take ports in order.
    expect(devices.filter((d) => d.includes("drive=disk_"))).toEqual([
      "virtio-blk-pci,drive=disk_1,id=disk_1-device",
      "virtio-blk-pci,drive=disk_2,id=disk_2-device",
      "virtio-blk-pci,drive=disk_3,id=disk_3-device,bus=hotplug0",
      "virtio-blk-pci,drive=disk_4,id=disk_4-device,bus=hotplug1",
    ]);
    // A comma in a path is doubled, as QEMU's option syntax wants.
    expect(cloud).toContain("id=disk_3,file=/disks/a,,b.qcow2,format=qcow2,if=none,cache=writeback");
    const micro = qemuArgs(withStandalone, paths, "tcg", "tap").join(" ");
    expect(micro).not.toContain("pcie-root-port");
    expect(micro).not.toContain("bus=hotplug");
  });

  it("names a finished reconfiguration by when the guest took its addresses and disks", () => {
    expect(reconfiguredTaskName({ addresses: "unchanged", disks: "unchanged" })).toBe(
      "Apply configuration to virtual machine",
    );
    expect(reconfiguredTaskName({ addresses: "live", disks: "unchanged" })).toBe(
      "Apply configuration to virtual machine (addresses applied live)",
    );
    expect(reconfiguredTaskName({ addresses: "unchanged", disks: "live" })).toBe(
      "Apply configuration to virtual machine (disks changed live)",
    );
    expect(reconfiguredTaskName({ addresses: "next_start", disks: "next_start" })).toBe(
      "Apply configuration to virtual machine (addresses apply at next start; disks change at next start)",
    );
  });

  it("holds a tap to its speed profile: a token bucket out to the guest, a policer in from it", () => {
    expect(shapingCommands("tbX", { downloadMbit: 10, uploadMbit: 1000 })).toEqual([
      "qdisc replace dev tbX root tbf rate 10mbit burst 25000 latency 50ms",
      "qdisc replace dev tbX handle ffff: ingress",
      "filter replace dev tbX parent ffff: pref 1 protocol all u32 match u32 0 0 action police rate 1000mbit burst 2500000 drop",
    ]);
    // Low rates still pass full-size packets.
    expect(shapingCommands("tbX", { downloadMbit: 1, uploadMbit: null })).toEqual([
      "qdisc replace dev tbX root tbf rate 1mbit burst 16384 latency 50ms",
    ]);
    expect(shapingCommands("tbX", undefined)).toEqual([]);
    expect(unshapingCommands("tbX")).toEqual(["qdisc del dev tbX root", "qdisc del dev tbX ingress"]);
  });

  it("sends the agent the seed's interface lines between a serial and an end", () => {
    expect(agentMessage("s1", "52:aa 192.0.2.10/24 192.0.2.1\n")).toBe(
      "network s1\n52:aa 192.0.2.10/24 192.0.2.1\nend\n",
    );
  });

  it("names taps and bridges within Linux's 15 characters, from the random end of the ID", () => {
    expect(tapName("vmnic_0000AAAABBBBBBBB")).toBe("tbAAAABBBBBBBB");
    expect(bridgeName("netw_CCCCCCCCCCCCCCCC")).toBe("brCCCCCCCCCCCC");
    expect(tapName("vmnic_short")).toBe("tbshort");
    // Interfaces made in the same millisecond share the start of their IDs, never their names.
    const now = Date.now();
    const names = new Set(Array.from({ length: 1000 }, () => tapName(newId("networkInterface", now))));
    expect(names.size).toBe(1000);
    for (const name of names) expect(name.length).toBeLessThanOrEqual(15);
  });
});

describe("NoCloud seed", () => {
  it("renders meta-data, user-data, network-config v2 and the demo init's plain files", () => {
    const seed = renderSeed(vm);
    expect(seed.get("meta-data")).toBe("instance-id: vm_AAAAAAAAAAAAAAAA\nlocal-hostname: web-01\n");
    expect(seed.get("user-data")).toMatch(/^#cloud-config\n/);
    expect(seed.get("user-data")).toContain("ssh_authorized_keys:\n  - ssh-ed25519 AAAA a@b");
    expect(seed.get("user-data")).toContain("TREBUCHET-READY vm_AAAAAAAAAAAAAAAA");
    expect(seed.get("network-config")).toContain("macaddress: 52:aa:bb:cc:dd:ee");
    expect(seed.get("network-config")).toContain("- 192.0.2.10/24");
    expect(seed.get("network-config")).toContain("- 2001:db8:100::10/64");
    expect(seed.get("trebuchet/interfaces")).toBe(
      "52:aa:bb:cc:dd:ee 192.0.2.10/24 192.0.2.1\n52:aa:bb:cc:dd:ee 2001:db8:100::10/64 2001:db8:100::1\n",
    );
    expect(seed.get("trebuchet/authorized_keys")).toBe("ssh-ed25519 AAAA a@b\n");
    expect(seed.get("trebuchet/options/motd")).toBe("hello\nworld");
    expect(seed.get("trebuchet/dns")).toBe("192.0.2.1\n");
  });

  it("reads back the same through a YAML 1.1 parser, as cloud-init's PyYAML reads it", () => {
    // Unquoted, 52:00:00:00:00:11 is a base-60 integer in YAML 1.1, and "no" is false.
    const digitsOnly: VmDefinition = {
      ...vm,
      interfaces: [{ ...vm.interfaces[0]!, mac: "52:00:00:00:00:11" }],
      options: [{ key: "install_agent", value: "no" }],
    };
    const seed = renderSeed(digitsOnly);
    const network = parseYaml(seed.get("network-config")!, { version: "1.1" });
    expect(network.ethernets.eth0.match.macaddress).toBe("52:00:00:00:00:11");
    const userData = parseYaml(seed.get("user-data")!, { version: "1.1" });
    expect(userData.write_files[0].content).toBe("no");
    expect(parseYaml(seed.get("meta-data")!, { version: "1.1" })).toEqual({
      "instance-id": vm.id,
      "local-hostname": "web-01",
    });
  });
});

describe("the undo stack", () => {
  it("undoes completed steps newest first when a later step fails, and nothing on success", async () => {
    const done: string[] = [];
    await expect(
      withReverter(async (r) => {
        r.add("one", () => void done.push("undo one"));
        r.add("two", () => void done.push("undo two"));
        throw new Error("step three failed");
      }),
    ).rejects.toThrow("step three failed");
    expect(done).toEqual(["undo two", "undo one"]);
    done.length = 0;
    await withReverter(async (r) => r.add("one", () => void done.push("undo one")));
    expect(done).toEqual([]);
  });

  it("keeps undoing when one undo fails, and reports it", async () => {
    const reverter = new Reverter();
    const done: string[] = [];
    reverter.add("a", () => void done.push("a"));
    reverter.add("b", () => {
      throw new Error("stuck");
    });
    expect(await reverter.revert()).toEqual(["b: stuck"]);
    expect(done).toEqual(["a"]);
  });
});

describe("kernel module load order", () => {
  it("puts every module after its dependencies, once", () => {
    const deps: Record<string, string[]> = {
      virtio_net: ["virtio", "virtio_ring", "net_failover"],
      net_failover: ["failover"],
      ext4: ["jbd2", "mbcache", "crc16"],
      jbd2: [],
    };
    const order = loadOrder(["virtio_net", "ext4"], (m) => deps[m] ?? []);
    expect(order).toEqual([
      "virtio",
      "virtio_ring",
      "failover",
      "net_failover",
      "virtio_net",
      "jbd2",
      "mbcache",
      "crc16",
      "ext4",
    ]);
  });
});
