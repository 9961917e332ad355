import { open } from "node:fs/promises";

/**
 * Reads a file (or standard input for "-") as bytes, never more than `cap + 1` bytes,
 * so an oversized input is detected without holding all of it.
 */
export async function readCapped(path: string, cap: number): Promise<Uint8Array> {
  if (path === "-") {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of process.stdin) {
      const buffer = chunk as Buffer;
      chunks.push(buffer);
      size += buffer.length;
      if (size > cap) break;
    }
    return Buffer.concat(chunks).subarray(0, cap + 1);
  }
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(cap + 1);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, null);
      if (bytesRead === 0 || filled + bytesRead >= buffer.length) {
        filled += bytesRead;
        break;
      }
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}
