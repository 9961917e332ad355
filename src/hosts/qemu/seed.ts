import { stringify as toYaml } from "yaml";
import type { VmDefinition } from "../driver.js";

/**
 * The NoCloud seed of a VM, as files: `meta-data`, `user-data` and `network-config`
 * (version 2) for cloud-init images, and the same facts as plain line-oriented files
 * under `trebuchet/` for the demo template's busybox init, which has no YAML parser.
 * Pure: the driver writes these files and packs them into an ISO labelled `cidata`.
 */
export function renderSeed(vm: VmDefinition): Map<string, string> {
  const files = new Map<string, string>();
  // cloud-init reads YAML 1.1, where an unquoted MAC address is a base-60 number and "on"
  // or "no" are booleans: write 1.1, which quotes every such string.
  const stringify = (value: unknown) => toYaml(value, { version: "1.1" });
  files.set("meta-data", stringify({ "instance-id": vm.id, "local-hostname": vm.hostname }));
  const userData: Record<string, unknown> = {
    hostname: vm.hostname,
    fqdn: vm.hostname,
    ssh_authorized_keys: vm.authorizedKeys,
    disable_root: false,
    // Apply network-config at every boot, not only the first: address changes made while
    // the VM existed reach the guest at its next start.
    updates: { network: { when: ["boot"] } },
  };
  // Cloud images say they are ready the way the demo template does: on the serial console.
  userData.runcmd = [["sh", "-c", `echo TREBUCHET-READY ${vm.id} > /dev/ttyS0`]];
  if (vm.options.length > 0) {
    userData.write_files = vm.options.map((o) => ({
      path: `/etc/trebuchet/options/${o.key}`,
      content: o.value,
      permissions: "0600",
    }));
  }
  files.set("user-data", `#cloud-config\n${stringify(userData)}`);
  const ethernets: Record<string, unknown> = {};
  vm.interfaces.forEach((nic, i) => {
    const routes = nic.addresses
      .filter((a) => a.gateway)
      .map((a) => ({ to: a.version === 4 ? "0.0.0.0/0" : "::/0", via: a.gateway }));
    ethernets[`eth${i}`] = {
      match: { macaddress: nic.mac },
      "set-name": `eth${i}`,
      addresses: nic.addresses.map((a) => `${a.address}/${a.prefix}`),
      ...(routes.length > 0 ? { routes } : {}),
      ...(vm.dnsServers.length > 0 && i === 0 ? { nameservers: { addresses: vm.dnsServers } } : {}),
    };
  });
  files.set("network-config", stringify({ version: 2, ethernets }));

  files.set("trebuchet/instance-id", `${vm.id}\n`);
  files.set("trebuchet/hostname", `${vm.hostname}\n`);
  files.set("trebuchet/authorized_keys", vm.authorizedKeys.map((k) => `${k}\n`).join(""));
  // One address per line: MAC, address/prefix, gateway or "-". The first address of each family gets the route.
  const lines: string[] = [];
  const routed = new Set<number>();
  for (const nic of vm.interfaces) {
    for (const a of nic.addresses) {
      const gateway = a.gateway && !routed.has(a.version) ? a.gateway : "-";
      if (gateway !== "-") routed.add(a.version);
      lines.push(`${nic.mac} ${a.address}/${a.prefix} ${gateway}\n`);
    }
  }
  files.set("trebuchet/interfaces", lines.join(""));
  files.set("trebuchet/dns", vm.dnsServers.map((s) => `${s}\n`).join(""));
  for (const option of vm.options) files.set(`trebuchet/options/${option.key}`, option.value);
  return files;
}
