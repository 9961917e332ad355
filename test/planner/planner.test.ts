/** The planner is pure: a spec and a hand-made catalog in, a plan or located problems out. */
import { describe, expect, it } from "vitest";
import { planBuild } from "../../src/planner/planner.js";
import type { CatalogSnapshot } from "../../src/planner/snapshot.js";
import { checkSpec } from "../../src/spec/index.js";

const t = 1_700_000_000;
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b";

function catalog(): CatalogSnapshot {
  return {
    organization: {
      id: "org_a",
      name: "A",
      sub_domain: "a",
      infrastructure_domain: "a.test",
      state: "active",
      managed: 0,
      currency_iso_code: "GBP",
      country_iso_code: null,
      created_at: t,
      activated_at: t,
      suspended_at: null,
    },
    dataCenters: [
      {
        id: "dc_1",
        name: "One",
        permalink: "one",
        country_name: "United Kingdom",
        country_iso_code: "GB",
        created_at: t,
      },
      {
        id: "dc_2",
        name: "Two",
        permalink: "two",
        country_name: "United Kingdom",
        country_iso_code: "GB",
        created_at: t,
      },
    ],
    zones: [
      { id: "zone_1", name: "One A", permalink: "one-a", data_center_id: "dc_1", created_at: t },
      { id: "zone_2", name: "Two A", permalink: "two-a", data_center_id: "dc_2", created_at: t },
    ],
    hosts: [
      {
        id: "host_1",
        name: "h",
        data_center_id: "dc_1",
        zone_id: "zone_1",
        driver: "qemu",
        cpu_cores: 4,
        memory_in_gb: 8,
        disk_in_gb: 100,
        state: "active",
        namespace: null,
        heartbeat_at: null,
        created_at: t,
      },
    ],
    packages: [
      {
        id: "vmpkg_1",
        name: "S",
        permalink: "s",
        cpu_cores: 1,
        memory_in_gb: 1,
        storage_in_gb: 5,
        ipv4_addresses: 1,
        monthly_bandwidth_allowance_in_gb: null,
        privacy: "public",
        organization_id: null,
        use_dedicated_cpus: 0,
        group_name: "g",
        created_at: t,
      },
    ],
    templates: [
      {
        id: "dtpl_1",
        name: "Demo",
        permalink: "templates/demo",
        description: null,
        universal: 1,
        organization_id: null,
        operating_system_name: null,
        created_at: t,
      },
    ],
    templateVersions: [
      {
        id: "dtv_1",
        disk_template_id: "dtpl_1",
        number: 1,
        stable: 1,
        size_in_gb: 1,
        image_kind: "kernel",
        image_path: "x",
        kernel_path: "k",
        initrd_path: null,
        options_json: JSON.stringify([
          {
            name: "motd",
            type: "Text",
            label: "m",
            description: null,
            required: false,
            placeholder: null,
            prefill: "hi",
            pattern: null,
          },
        ]),
        created_at: t,
      },
      {
        id: "dtv_2",
        disk_template_id: "dtpl_1",
        number: 2,
        stable: 1,
        size_in_gb: 2,
        image_kind: "kernel",
        image_path: "x",
        kernel_path: "k",
        initrd_path: null,
        options_json: "[]",
        created_at: t,
      },
      {
        id: "dtv_3",
        disk_template_id: "dtpl_1",
        number: 3,
        stable: 0,
        size_in_gb: 2,
        image_kind: "kernel",
        image_path: "x",
        kernel_path: "k",
        initrd_path: null,
        options_json: "[]",
        created_at: t,
      },
    ],
    ioProfiles: [],
    networks: [
      {
        id: "netw_1",
        name: "Public",
        permalink: "one-public",
        data_center_id: "dc_1",
        is_default: 1,
        dns_servers_json: "[]",
        created_at: t,
      },
      {
        id: "netw_2",
        name: "Elsewhere",
        permalink: "two-public",
        data_center_id: "dc_2",
        is_default: 1,
        dns_servers_json: "[]",
        created_at: t,
      },
    ],
    subnets: [
      {
        id: "sbnt_1",
        network_id: "netw_1",
        ip_version: 4,
        cidr: "192.0.2.0/24",
        gateway: "192.0.2.1",
        range_start: "192.0.2.10",
        range_end: "192.0.2.20",
        created_at: t,
      },
    ],
    speedProfiles: [],
    virtualNetworks: [],
    sshKeys: [
      {
        id: "sshkey_1",
        organization_id: "org_a",
        user_id: "user_1",
        name: "k",
        public_key: KEY,
        fingerprint: "f",
        created_at: t,
      },
    ],
    members: [{ id: "user_1", email_address: "a@b.test", first_name: null, last_name: null, created_at: t }],
    groups: [],
    tags: [],
    isos: [],
    disks: [],
    ipAddresses: [],
  };
}

const plan = (inner: string, parts: { resources?: string; template?: string } = {}) => {
  const resources = parts.resources ?? '<Package by="permalink">s</Package>';
  const template = parts.template ?? '<DiskTemplate by="permalink">templates/demo</DiskTemplate>';
  const checked = checkSpec(
    `<VirtualMachineSpec><Resources>${resources}</Resources><DiskTemplate>${template}</DiskTemplate>${inner}</VirtualMachineSpec>`,
  );
  expect(checked.errors).toEqual([]);
  return planBuild(checked.spec!, catalog(), () => "generated-host-name");
};

describe("planBuild", () => {
  it("picks the zone, the latest stable version, the default network and the package's sizes", () => {
    const result = plan('<DataCenter by="permalink">one</DataCenter>');
    if (!result.ok) throw new Error(JSON.stringify(result.problems));
    expect(result.plan).toMatchObject({
      dataCenterId: "dc_1",
      zoneId: "zone_1",
      memoryInGb: 1,
      cpuCores: 1,
      template: { versionId: "dtv_2", number: 2 },
      disks: [{ name: "System Disk", sizeInGb: 5, system: true }],
      interfaces: [{ networkId: "netw_1", allocations: [{ kind: "new", version: 4, subnetId: null }] }],
      hostname: "generated-host-name",
      hostnameGenerated: true,
    });
    expect(result.normalized.data_center).toEqual({ id: "dc_1" });
    expect(result.normalized.disk_template?.version).toBe(2);
  });

  it("refuses a zone outside the data center, and a network of another data center", () => {
    const result = plan(
      '<Zone by="permalink">two-a</Zone><DataCenter by="permalink">one</DataCenter><NetworkInterfaces><NetworkInterface><Network by="permalink">two-public</Network></NetworkInterface></NetworkInterfaces>',
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => [p.path, p.code])).toEqual([
      ["/VirtualMachineSpec/Zone", "invalid_value"],
      ["/VirtualMachineSpec/NetworkInterfaces/NetworkInterface[1]/Network", "invalid_value"],
    ]);
  });

  it("refuses resources no host can hold, and data centers without hosts", () => {
    const big = plan('<DataCenter by="permalink">one</DataCenter>', {
      resources: "<Memory>64</Memory><CPUCores>2</CPUCores>",
    });
    expect(big.ok ? [] : big.problems.map((p) => p.message)).toEqual([
      "no host in data center one can run 64 GB and 2 CPU cores (the largest has 8 GB)",
    ]);
    const empty = plan('<DataCenter by="permalink">two</DataCenter>');
    expect(empty.ok ? [] : empty.problems.map((p) => p.message)).toEqual([
      "data center two has no hypervisor host",
      "network two-public has no IPv4 subnet",
    ]);
  });

  it("resolves keys from all users, named users and inline keys without duplicates; merges option defaults", () => {
    const result = plan(
      `<DataCenter by="permalink">one</DataCenter><AuthorizedKeys><Users all="yes"><User by="email_address">a@b.test</User></Users><SSHKeys><SSHKey>${KEY}</SSHKey></SSHKeys></AuthorizedKeys>`,
      {
        template:
          '<DiskTemplate by="permalink">templates/demo</DiskTemplate><Version by="number">1</Version>',
      },
    );
    if (!result.ok) throw new Error(JSON.stringify(result.problems));
    expect(result.plan.authorizedKeys).toEqual([KEY]);
    expect(result.plan.template).toMatchObject({
      versionId: "dtv_1",
      options: [{ key: "motd", value: "hi" }],
    });
    expect(result.normalized.authorized_keys?.users).toEqual([{ id: "user_1" }]);
  });

  it("refuses an unstable or missing version only when asked for by number", () => {
    const unstable = plan('<DataCenter by="permalink">one</DataCenter>', {
      template: '<DiskTemplate by="permalink">templates/demo</DiskTemplate><Version by="number">3</Version>',
    });
    expect(unstable.ok).toBe(true);
    const missing = plan('<DataCenter by="permalink">one</DataCenter>', {
      template: '<DiskTemplate by="permalink">templates/demo</DiskTemplate><Version by="number">9</Version>',
    });
    expect(missing.ok ? [] : missing.problems.map((p) => p.message)).toEqual([
      "disk template templates/demo has no version 9",
    ]);
  });

  it("lists unknown references with their paths, all at once", () => {
    const result = plan(
      '<DataCenter by="permalink">nowhere</DataCenter><Group by="name">g</Group><ISO>iso_x</ISO><AuthorizedKeys><Users><User>user_x</User></Users></AuthorizedKeys>',
    );
    expect(result.ok ? [] : result.problems.map((p) => p.path)).toEqual([
      "/VirtualMachineSpec/DataCenter",
      "/VirtualMachineSpec/Group",
      "/VirtualMachineSpec/ISO",
      "/VirtualMachineSpec/AuthorizedKeys/Users/User[1]",
    ]);
  });
});
