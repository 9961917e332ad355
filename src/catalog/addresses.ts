import ipaddr from "ipaddr.js";

/**
 * IP address arithmetic for allocation. An address's *key* is its value as fixed-width
 * lower-case hex (8 digits for IPv4, 32 for IPv6), so keys sort and compare as text in
 * SQL exactly as the addresses do as numbers.
 */
export type IpVersion = 4 | 6;

export function versionOf(address: string): IpVersion | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(address)) return 4;
  if (ipaddr.IPv6.isValid(address) && !address.includes("%")) return 6;
  return undefined;
}

export function addressKey(address: string): string {
  const bytes = ipaddr.parse(address).toByteArray();
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function keyToBigInt(key: string): bigint {
  return BigInt(`0x${key}`);
}

export function bigIntToAddress(value: bigint, version: IpVersion): string {
  const width = version === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = width - 1; i >= 0; i--) bytes.push(Number((value >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

export function bigIntToKey(value: bigint, version: IpVersion): string {
  return value.toString(16).padStart(version === 4 ? 8 : 32, "0");
}

/** Canonical text of an address (`2001:db8::a`, `192.0.2.10`). */
export function canonicalAddress(address: string): string | undefined {
  const version = versionOf(address.trim());
  if (!version) return undefined;
  return ipaddr.parse(address.trim()).toString();
}

export interface Cidr {
  version: IpVersion;
  network: string;
  prefix: number;
  first: bigint;
  last: bigint;
}

export function parseCidr(text: string): Cidr | undefined {
  try {
    const [address, prefix] = ipaddr.parseCIDR(text.trim());
    const version: IpVersion = address.kind() === "ipv4" ? 4 : 6;
    const bits = version === 4 ? 32 : 128;
    const value = keyToBigInt(addressKey(address.toString()));
    const size = 1n << BigInt(bits - prefix);
    const first = (value / size) * size;
    return { version, network: bigIntToAddress(first, version), prefix, first, last: first + size - 1n };
  } catch {
    return undefined;
  }
}

export function cidrText(cidr: Cidr): string {
  return `${cidr.network}/${cidr.prefix}`;
}

export function inCidr(address: string, cidr: Cidr): boolean {
  if (versionOf(address) !== cidr.version) return false;
  const value = keyToBigInt(addressKey(address));
  return value >= cidr.first && value <= cidr.last;
}
