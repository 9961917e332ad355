import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "trebuchet-config-cli-"));

describe("trebuchet config and a refused configuration", () => {
  it("serve refuses TREBUCHET_READY_TIMEOUT=2m before starting, exiting 78 with the key, value and what is expected", () => {
    const result = runCli(["serve", "--data", dir, "--listen", "127.0.0.1:0"], {
      env: { TREBUCHET_READY_TIMEOUT: "2m", TREBUCHET_CONFIG: "", DATABASE_URL: "" },
    });
    expect(result.status).toBe(78);
    expect(result.stderr).toBe(
      'trebuchet: configuration refused:\n  TREBUCHET_READY_TIMEOUT="2m" (agent.ready_timeout_seconds): expected a whole number of seconds, at least 1\n',
    );
  });

  it("config check reads a file with the environment and prints every value with its source; schema and example print", () => {
    const file = join(dir, "trebuchet.yaml");
    writeFileSync(file, "listen: 127.0.0.1:9000\ncors:\n  origins: ['*']\n");
    const checked = runCli(["config", "check", file, "--json"], {
      env: { TREBUCHET_BASE_DOMAIN: "cloud.example" },
    });
    expect(checked.status).toBe(0);
    const report = JSON.parse(checked.stdout) as {
      settings: { listen: string; base_domain: string; cors: { origins: string[] } };
      sources: Record<string, string>;
    };
    expect(report.settings).toMatchObject({
      listen: "127.0.0.1:9000",
      base_domain: "cloud.example",
      cors: { origins: ["*"] },
    });
    expect(report.sources).toMatchObject({
      listen: `${file}:1`,
      base_domain: "TREBUCHET_BASE_DOMAIN",
      "cors.origins": `${file}:3`,
    });

    writeFileSync(file, "listen: nowhere\n");
    const refused = runCli(["config", "check", file]);
    expect(refused.status).toBe(78);
    expect(refused.stderr).toContain(
      `${file}:1: listen is "nowhere": expected HOST:PORT, [IPv6]:PORT or :PORT`,
    );

    const schema = runCli(["config", "schema"]);
    expect(JSON.parse(schema.stdout)).toMatchObject({ type: "object", additionalProperties: false });
    expect(runCli(["config", "example"]).stdout).toContain("#listen: 127.0.0.1:8080");
  });
});
