import ipaddr from "ipaddr.js";

/** Parses an address, folding IPv4-mapped IPv6 (`::ffff:192.0.2.1`) to IPv4. */
export function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ipaddr.isValid(text)) return undefined;
  const address = ipaddr.parse(text);
  if (address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    return (address as ipaddr.IPv6).toIPv4Address();
  }
  return address;
}

/** A CIDR in canonical form (`192.0.2.0/24`), or undefined when it is not one. */
export function normaliseCidr(text: string): string | undefined {
  try {
    const [address, prefix] = ipaddr.parseCIDR(text.trim());
    const network = ipaddr.parse(
      address.kind() === "ipv4"
        ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${prefix}`).toString()
        : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${prefix}`).toString(),
    );
    return `${network.toString()}/${prefix}`;
  } catch {
    return undefined;
  }
}

export function addressInNetworks(address: string, cidrs: readonly string[]): boolean {
  const parsed = parseAddress(address);
  if (!parsed) return false;
  return cidrs.some((cidr) => {
    try {
      const [network, prefix] = ipaddr.parseCIDR(cidr);
      return network.kind() === parsed.kind() && parsed.match(network, prefix);
    } catch {
      return false;
    }
  });
}
