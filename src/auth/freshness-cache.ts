/**
 * A small process-local cache whose entries expire after a fixed time: for facts every
 * request reads and that change rarely (a token's row, an organization's state). A
 * change made anywhere is seen by every process within `ttlMs`; 0 turns caching off.
 * Only found values are kept, so unknown keys (guessed tokens) cannot fill it.
 */
export class FreshnessCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();

  constructor(
    readonly ttlMs: number,
    private readonly maxEntries = 10_000,
  ) {}

  async get(key: string, load: () => Promise<V | undefined>, now = Date.now()): Promise<V | undefined> {
    const entry = this.entries.get(key);
    if (entry && entry.until > now) return entry.value;
    const value = await load();
    if (value === undefined || this.ttlMs <= 0) {
      this.entries.delete(key);
      return value;
    }
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.delete(key);
    this.entries.set(key, { value, until: now + this.ttlMs });
    return value;
  }

  /** Forgets everything (a change this process made itself, so it need not wait). */
  clear(): void {
    this.entries.clear();
  }
}

/** How long API processes trust a cached credential or organization state (ms). */
export const DEFAULT_AUTH_CACHE_MS = 1000;
