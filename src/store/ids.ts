import { randomBytes } from "node:crypto";

/** Type prefixes of object IDs, as the Katapult API uses them (`vm_`, `vmbuild_`, `task_`, ...). */
export const ID_PREFIXES = {
  organization: "org",
  user: "user",
  apiToken: "tok",
  dataCenter: "loc",
  zone: "zone",
  host: "host",
  package: "vmpkg",
  diskTemplate: "dtpl",
  diskTemplateVersion: "dtv",
  diskIOProfile: "diop",
  network: "netw",
  subnet: "sbnt",
  virtualNetwork: "vnet",
  networkSpeedProfile: "nsp",
  ipAddress: "ip",
  sshKey: "sshkey",
  virtualMachineGroup: "vmgrp",
  tag: "tag",
  iso: "iso",
  disk: "disk",
  backupPolicy: "dbp",
  virtualMachine: "vm",
  networkInterface: "vmnet",
  build: "vmbuild",
  task: "task",
  trashObject: "trsh",
  capability: "cap",
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SUFFIX_LENGTH = 16;
// The largest multiple of 62 below 256: bytes at or above it are discarded so every character is equally likely.
const UNBIASED_LIMIT = 256 - (256 % ALPHABET.length);

// Random bytes are drawn from the CSPRNG in blocks: one system call serves many IDs.
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let poolOffset = 0;

/** One byte from the operating system's CSPRNG (drawn in blocks). */
export function randomByte(): number {
  if (poolOffset === POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  return pool[poolOffset++]!;
}

/** Random alphanumerics from the operating system's CSPRNG, without modulo bias. */
export function randomAlphanumeric(length: number): string {
  let out = "";
  while (out.length < length) {
    const byte = randomByte();
    if (byte < UNBIASED_LIMIT) out += ALPHABET[byte % ALPHABET.length];
  }
  return out;
}

// Digits in ASCII order, so that IDs compare (bytewise, as SQLite's indexes do) in time order.
const SORTABLE_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const TIME_LENGTH = 7; // 62^7 milliseconds: until the year 2081.
const RANDOM_LENGTH = SUFFIX_LENGTH - TIME_LENGTH;

/** Milliseconds since the epoch as TIME_LENGTH sortable base-62 digits. */
function timeDigits(ms: number): string {
  let out = "";
  for (let i = 0; i < TIME_LENGTH; i++) {
    out = SORTABLE_DIGITS[ms % 62]! + out;
    ms = Math.floor(ms / 62);
  }
  return out;
}

/**
 * A new object ID: the type prefix, `_`, and 16 alphanumerics: 7 that encode the
 * creation time in milliseconds, then 9 random ones (~53 bits, so IDs made in the same
 * millisecond do not collide). IDs made later sort later: a primary-key index grows
 * at its end, and the rows a build writes share index pages instead of touching a
 * random page each, which is most of what a commit writes.
 */
export function newId(kind: IdKind, now = Date.now()): string {
  return `${ID_PREFIXES[kind]}_${timeDigits(now)}${randomAlphanumeric(RANDOM_LENGTH)}`;
}

export function hasPrefix(id: string, kind: IdKind): boolean {
  return id.startsWith(`${ID_PREFIXES[kind]}_`);
}
