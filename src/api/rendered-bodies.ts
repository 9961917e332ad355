/**
 * Response bodies kept as the bytes sent, for objects whose bulk never changes (a
 * build's spec XML): serialising a few kilobytes of escaped XML and encoding it as
 * UTF-8 costs more than the rest of the request. An entry is used only while the
 * object's changeable fields (its fingerprint) are as they were when it was rendered.
 * The cache holds at most `maxBytes`, oldest entries leaving first.
 */
export class RenderedBodies {
  private readonly entries = new Map<string, { fingerprint: string; bytes: Buffer }>();
  private size = 0;

  constructor(private readonly maxBytes = 8 * 1024 * 1024) {}

  async get(key: string, fingerprint: string, render: () => Promise<unknown>): Promise<Buffer> {
    const entry = this.entries.get(key);
    if (entry && entry.fingerprint === fingerprint) return entry.bytes;
    const bytes = Buffer.from(JSON.stringify(await render()));
    this.forget(key);
    if (bytes.length <= this.maxBytes) {
      this.entries.set(key, { fingerprint, bytes });
      this.size += bytes.length;
      for (const [oldest] of this.entries) {
        if (this.size <= this.maxBytes) break;
        this.forget(oldest);
      }
    }
    return bytes;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.size;
  }

  private forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.size -= entry.bytes.length;
    this.entries.delete(key);
  }
}
