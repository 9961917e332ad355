/** Property: any model survives a trip through each writer and back to its reader. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  canonical,
  parseSpec,
  writeSpec,
  writeXml,
  type Lookup,
  type VirtualMachineSpec,
} from "../../src/spec/index.js";

// Text that XML can carry: printable characters, markup characters and the three allowed
// control characters, and non-ASCII (including astral) letters.
const text = fc.string({
  unit: fc.constantFrom(..."abcXYZ019 -_.:#&<>\"'\t\n\r/é中😀[]{}|>*!%@`,?".split(/(?:)/u)),
  minLength: 1,
  maxLength: 12,
});
const integer = fc.integer({ min: -1_000_000, max: 1_000_000 }).filter((n) => n !== 0);

/** A lookup with one identifier (several keys cannot survive XML, by design of the format). */
const lookup = (...keys: (keyof Lookup)[]) =>
  fc.oneof(
    fc.constant<Lookup>({}),
    fc.tuple(fc.constantFrom(...keys), text).map(([k, v]): Lookup => ({ [k]: v })),
  );

const schedule = fc.record({ interval: text, frequency: integer, time: integer }, { requiredKeys: [] });
const backupPolicies = fc.array(fc.record({ retention: integer, schedule }, { requiredKeys: [] }), {
  minLength: 1,
  maxLength: 2,
});

const spec: fc.Arbitrary<VirtualMachineSpec> = fc.record(
  {
    zone: lookup("id", "permalink"),
    data_center: lookup("id", "name", "permalink"),
    resources: fc.record(
      { package: lookup("id", "permalink"), memory: integer, cpu_cores: integer },
      { requiredKeys: [] },
    ),
    disk_template: fc.record(
      {
        permalink: text,
        version: integer,
        options: fc.array(
          fc.record({ key: fc.oneof(fc.constant(""), text), value: fc.oneof(fc.constant(""), text) }),
          {
            minLength: 1,
            maxLength: 3,
          },
        ),
      },
      { requiredKeys: [] },
    ),
    system_disks: fc.array(
      fc.record(
        {
          name: text,
          size: integer,
          speed: text,
          io_profile: lookup("id", "permalink"),
          file_system_type: text,
          backup_policies: backupPolicies,
        },
        { requiredKeys: [] },
      ),
      { minLength: 1, maxLength: 2 },
    ),
    shared_disks: fc.array(lookup("id", "name"), { minLength: 1, maxLength: 2 }),
    network_interfaces: fc.array(
      fc.record(
        {
          network: lookup("id", "permalink"),
          virtual_network: lookup("id"),
          speed_profile: lookup("id", "permalink"),
          ip_address_allocations: fc.array(
            fc.record(
              {
                type: text,
                ip_address: lookup("id", "address"),
                version: integer,
                subnet: lookup("id", "address"),
              },
              { requiredKeys: [] },
            ),
            { minLength: 1, maxLength: 2 },
          ),
        },
        { requiredKeys: [] },
      ),
      { minLength: 1, maxLength: 2 },
    ),
    hostname: text,
    name: text,
    description: text,
    group: lookup("id", "name"),
    authorized_keys: fc.oneof(
      fc.record({ all_users: fc.constant(true), all_ssh_keys: fc.constant(true) }, { requiredKeys: [] }),
      fc.record(
        {
          users: fc.array(lookup("id", "email_address"), { minLength: 1, maxLength: 2 }),
          ssh_keys: fc.array(text, { minLength: 1, maxLength: 2 }),
          continuous_management: fc.constant(true),
        },
        { requiredKeys: [] },
      ),
    ),
    backup_policies: backupPolicies,
    tags: fc.array(text, { minLength: 1, maxLength: 3 }),
    iso: text,
  },
  { requiredKeys: [] },
);

describe("round trip (property)", () => {
  for (const format of ["xml", "json", "yaml"] as const) {
    it(`model -> ${format} -> model`, () => {
      fc.assert(
        fc.property(spec, (model) => {
          const written = writeSpec(model, format);
          const result = parseSpec(written, { format });
          expect(result.errors).toEqual([]);
          expect(canonical(result.spec!)).toEqual(canonical(model));
        }),
        { numRuns: 300 },
      );
    });
  }

  it("model -> compact XML and server-normalised XML -> model", () => {
    fc.assert(
      fc.property(spec, (model) => {
        for (const style of [{ style: "katapult" as const }, { style: "server" as const }]) {
          const result = parseSpec(writeXml(model, style), { format: "xml" });
          expect(result.errors).toEqual([]);
          expect(canonical(result.spec!)).toEqual(canonical(model));
        }
      }),
      { numRuns: 200 },
    );
  });
});
