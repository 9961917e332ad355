export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all of this host's IPv4 loopback: 127.0.0.1). */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65_535) throw new Error(`expected HOST:PORT, got "${text}"`);
  return { host: match[1] ?? (match[2] || "127.0.0.1"), port };
}
