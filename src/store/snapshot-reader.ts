import type SQLite from "better-sqlite3";

/**
 * SQLite stores' second connection, for prepared reads. Kysely serialises every query
 * on its one SQLite connection behind an async lock (a transaction holds it across
 * awaits); a read on a connection of its own runs at once, synchronously, and WAL gives
 * it the latest committed state, never another request's uncommitted writes.
 *
 * Opening and closing a WAL read transaction (two `fcntl` locks on the shared-memory
 * index, and the pager's bookkeeping) costs about as much as the primary-key lookup
 * inside it, and a busy server answers many requests per turn of the event loop. So the requests
 * that arrive in one poll phase share one read transaction:
 *
 * - `shareUntilTurnEnds()` is called as each request arrives from the network, in the
 *   poll phase; the sharing window ends in the same turn's check phase (`setImmediate`).
 *   Reads outside a window (timers, the worker loop) each see the latest commit.
 * - The snapshot opens at the window's first read, after the poll that delivered the
 *   requests returned. Every request read from it was sent before that, so a request
 *   sent after another process committed sees that commit. Two exceptions, where a
 *   request may read a snapshot up to one turn older than itself: libuv polls a second
 *   time in one phase after a poll that returned 1024 ready sockets, and Node delivers
 *   the requests of a socket it paused (its responses backed up) when it resumes it.
 * - Before this process's writer connection runs any statement, the snapshot ends, so
 *   this process always reads its own writes.
 */
export class SnapshotReader {
  private readonly begin: SQLite.Statement;
  private readonly commit: SQLite.Statement;
  private sharing = false;
  private open = false;

  constructor(private readonly connection: SQLite.Database) {
    this.begin = connection.prepare("BEGIN");
    this.commit = connection.prepare("COMMIT");
  }

  /** A SELECT prepared once; each call reads the shared snapshot when there is one. */
  select<Row>(sql: string): (parameters: readonly unknown[]) => Row[] {
    const statement = this.connection.prepare(sql).raw(true);
    const toRow = rowBuilder<Row>(statement.columns().map((column) => column.name));
    return (parameters) => {
      if (this.sharing && !this.open) {
        this.begin.run();
        this.open = true;
      }
      return (statement.all(...parameters) as unknown[][]).map(toRow);
    };
  }

  /** A request has arrived: reads until this turn's check phase may share a snapshot. */
  shareUntilTurnEnds(): void {
    if (this.sharing) return;
    this.sharing = true;
    setImmediate(this.endTurn);
  }

  /**
   * Runs reads that belong together (synchronous selects of this reader) in one
   * snapshot: the one shared in this turn if there is one, else one of their own. They
   * see one state of the database, and pay for one read transaction instead of one each.
   */
  together<T>(read: () => T): T {
    if (this.sharing || this.open) return read();
    this.begin.run();
    this.open = true;
    try {
      return read();
    } finally {
      this.release();
    }
  }

  /** Ends the shared snapshot, if one is open: the next read sees everything committed so far. */
  readonly release = (): void => {
    if (!this.open) return;
    this.open = false;
    if (this.connection.open && this.connection.inTransaction) this.commit.run();
  };

  private readonly endTurn = (): void => {
    this.sharing = false;
    this.release();
  };
}

/**
 * Turns a raw row (an array) into an object of one fixed shape. better-sqlite3 builds
 * row objects property by property through V8's slow API, a quarter of a small
 * lookup's cost; an object literal of known keys is built by compiled code. The keys are
 * the column names of our own SQL, quoted as JSON.
 */
function rowBuilder<Row>(columns: readonly string[]): (values: unknown[]) => Row {
  const fields = columns.map((name, i) => `${JSON.stringify(name)}: values[${i}]`).join(", ");
  return new Function("values", `return { ${fields} };`) as (values: unknown[]) => Row;
}
