import type { Kysely, Transaction } from "kysely";
import type { Database } from "./schema.js";
import { runDirectlyIn, runStatement, type DirectRunner } from "./statements.js";

export type UnitOfWork<T> = (trx: Transaction<Database>) => Promise<T>;

/**
 * A lock a unit needs for all of it (an organization's, say): taken by the group before
 * any unit runs, every group taking its locks in key order, so that two groups (of two
 * processes) needing the same two locks never hold one each and wait for the other.
 */
export interface GroupLock {
  key: string;
  take: UnitOfWork<void>;
}

interface Pending {
  work: UnitOfWork<unknown>;
  lock?: GroupLock;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Group commit: the units of work submitted during one turn of the event loop run
 * one after another in a single transaction, each inside a savepoint of its own, and
 * are committed together at the end of the turn.
 *
 * A commit is most of a small write's cost (on SQLite: the WAL frames of every page
 * touched, and now and then a checkpoint with its fsync); rows written by concurrent
 * requests share pages, so one commit for many of them writes far less.
 *
 * Each unit still succeeds or fails alone: a unit that throws is rolled back to its
 * savepoint and the others go on. No unit's promise settles before the commit has
 * succeeded, so no caller answers for data that is not committed; if the commit fails,
 * every unit of the group fails with its error.
 *
 * A unit must use only the transaction it is given: the writer connection is held
 * until the group commits.
 */
export class GroupCommit {
  private queue: Pending[] = [];

  /** `direct`: how to run a statement straight on the writer connection (SQLite). */
  constructor(
    private readonly db: Kysely<Database>,
    private readonly direct?: DirectRunner,
  ) {}

  run<T>(work: UnitOfWork<T>, lock?: GroupLock): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => void this.commitQueued());
      this.queue.push({
        work,
        resolve: resolve as (value: unknown) => void,
        reject,
        ...(lock ? { lock } : {}),
      });
    });
  }

  private async commitQueued(): Promise<void> {
    const group = this.queue;
    this.queue = [];
    const outcomes: Outcome[] = [];
    try {
      await this.db.transaction().execute(async (trx) => {
        // A unit that kept the transaction past the group would otherwise write outside it.
        const direct = this.direct ? runDirectlyIn(trx, this.direct) : undefined;
        try {
          const locks = new Map(group.flatMap((unit) => (unit.lock ? [[unit.lock.key, unit.lock]] : [])));
          for (const key of [...locks.keys()].sort()) await locks.get(key)!.take(trx);
          for (const unit of group) outcomes.push(await runInSavepoint(trx, unit.work));
        } finally {
          direct?.stop();
        }
      });
    } catch (error) {
      for (const unit of group) unit.reject(error);
      return;
    }
    group.forEach((unit, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) unit.resolve(outcome.value);
      else unit.reject(outcome.error);
    });
  }
}

async function runInSavepoint(trx: Transaction<Database>, work: UnitOfWork<unknown>): Promise<Outcome> {
  await runStatement(trx, "savepoint group_unit");
  try {
    const value = await work(trx);
    await runStatement(trx, "release savepoint group_unit");
    return { ok: true, value };
  } catch (error) {
    await runStatement(trx, "rollback to savepoint group_unit");
    await runStatement(trx, "release savepoint group_unit");
    return { ok: false, error };
  }
}
