import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "trebuchet-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("trebuchet spec check", () => {
  it("prints the normalised model and exits 0 for a valid spec", () => {
    const { status, stdout } = runCli(["spec", "check", "examples/web.xml"]);
    expect(status).toBe(0);
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ valid: true, errors: [], warnings: [] });
    expect(report.spec.hostname).toBe("web-01");
    expect(report.spec.network_interfaces).toHaveLength(2);
  });

  it("exits 1 with located errors for an invalid spec, read from standard input", () => {
    const { status, stdout } = runCli(["spec", "check", "-"], {
      input: '<VirtualMachineSpec>\n  <Zone by="other">z</Zone>\n</VirtualMachineSpec>',
    });
    expect(status).toBe(1);
    expect(JSON.parse(stdout)).toEqual({
      valid: false,
      errors: [
        {
          line: 2,
          column: 3,
          path: "/VirtualMachineSpec/Zone",
          code: "unsupported_lookup",
          message: 'Zone by="other" is not supported',
        },
      ],
      warnings: [],
      spec: null,
    });
  });

  it("takes the format from the extension, or from --format", () => {
    const file = join(dir, "spec.yaml");
    writeFileSync(file, "rocket: 1\n");
    expect(JSON.parse(runCli(["spec", "check", file]).stdout).errors[0].code).toBe("unknown_field");
    expect(runCli(["spec", "check", "--format", "json", "-"], { input: "{" }).status).toBe(1);
  });

  it.each([
    [["spec", "check"]],
    [["spec", "check", "/nonexistent/spec.xml"]],
    [["spec", "check", "--format", "toml", "examples/web.xml"]],
    [["spec", "convert", "examples/web.xml"]],
    [["no-such-command"]],
  ])("exits 2 on a usage error: %j", (args) => {
    const { status, stderr } = runCli(args);
    expect(status).toBe(2);
    expect(stderr).toMatch(/error/);
  });
});

describe("trebuchet spec convert", () => {
  it("converts XML to JSON and YAML and back to the same model", () => {
    const json = runCli(["spec", "convert", "examples/web.xml", "--to", "json"]);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout).data_center).toEqual({ permalink: "lab-1" });
    const yaml = runCli(["spec", "convert", "-", "--format", "json", "--to", "yaml"], { input: json.stdout });
    expect(yaml.stdout).toContain("data_center:\n  permalink: lab-1\n");
    const xml = runCli(["spec", "convert", "-", "--format", "yaml", "--to", "xml"], { input: yaml.stdout });
    const original = JSON.parse(runCli(["spec", "check", "examples/web.xml"]).stdout).spec;
    const back = JSON.parse(
      runCli(["spec", "check", "-", "--format", "xml"], { input: xml.stdout }).stdout,
    ).spec;
    expect(back).toEqual(original);
  });

  it("exits 1 and names the problem when the input cannot be read", () => {
    const { status, stderr } = runCli(["spec", "convert", "-", "--format", "xml", "--to", "json"], {
      input: "<a",
    });
    expect(status).toBe(1);
    expect(stderr).toMatch(/^-:1:\d+: malformed: /);
  });
});

describe("trebuchet admin migrate", () => {
  it("creates the SQLite database, then reports it up to date", () => {
    const data = join(dir, "data");
    const first = runCli(["admin", "migrate", "--data", data, "--json"], { env: { DATABASE_URL: "" } });
    expect(first.status).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({
      database: "sqlite",
      applied: [
        "0001-initial",
        "0002-work-queue",
        "0003-lifecycle",
        "0004-column-defaults",
        "0005-vm-resources",
        "0006-backup-policy-schedules",
        "0007-disks-built-for-a-vm",
        "0008-organization-limits",
      ],
      pending: [],
    });
    const second = runCli(["admin", "migrate", "--data", data, "--json"], { env: { DATABASE_URL: "" } });
    expect(JSON.parse(second.stdout)).toMatchObject({ applied: [], pending: [] });
  });

  it("fails clearly on a DATABASE_URL that is not PostgreSQL", () => {
    const result = runCli(["admin", "migrate"], { env: { DATABASE_URL: "mysql://x" } });
    expect(result.status).toBe(78);
    expect(result.stderr).toContain(
      'DATABASE_URL="mysql://x" (database_url): expected a postgres:// URL or null',
    );
  });
});
