import type { Command } from "commander";
import { migrateToLatest, openStore, storeOptionsFromEnv } from "../store/index.js";

interface StoreFlags {
  data?: string;
  json?: boolean;
}

/** Prints a result for people, or as one JSON document with --json. */
export function output(flags: { json?: boolean }, value: unknown, human: string): void {
  process.stdout.write(flags.json ? JSON.stringify(value, null, 2) + "\n" : human + "\n");
}

export function registerAdminCommands(program: Command): void {
  const admin = program
    .command("admin")
    .description("Operator commands; the database is DATABASE_URL (PostgreSQL) or SQLite in --data DIR");

  admin
    .command("migrate")
    .description("Bring the database schema up to date (also done at every start)")
    .option(
      "--data <dir>",
      "data directory of the embedded SQLite database (default: $TREBUCHET_DATA or .data)",
    )
    .option("--json", "print the result as JSON")
    .action(async (flags: StoreFlags) => {
      const store = await openStore({ ...storeOptionsFromEnv(flags.data), migrate: false });
      try {
        const report = await migrateToLatest(store.db);
        const human = report.applied.length
          ? `applied ${report.applied.join(", ")} to ${store.location}`
          : `${store.location} is up to date`;
        output(flags, { database: store.dialect, location: store.location, ...report }, human);
      } finally {
        await store.close();
      }
    });
}
