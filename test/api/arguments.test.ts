import fc from "fast-check";
import qs from "qs";
import { describe, expect, it } from "vitest";
import { parseQuery } from "../../src/api/arguments.js";

const QS_OPTIONS = {
  depth: 4,
  arrayLimit: 100,
  parameterLimit: 200,
  allowPrototypes: false,
  plainObjects: true,
};
const name = fc.stringMatching(/^[a-z_][a-z0-9_]{0,12}$/);
const value = fc.stringMatching(/^[A-Za-z0-9_.~%+-]{0,20}$/);

describe("parseQuery", () => {
  it("reads a single lookup as qs does", () => {
    expect(parseQuery("virtual_machine_build[id]=vmbuild_abc")).toEqual({
      virtual_machine_build: { id: "vmbuild_abc" },
    });
  });

  it("gives qs's result for every query made of lookups, fast path or not", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(name, name, value), { minLength: 1, maxLength: 3 }), (pairs) => {
        const query = pairs.map(([a, b, v]) => `${a}[${b}]=${v}`).join("&");
        expect(parseQuery(query)).toEqual(qs.parse(query, QS_OPTIONS));
      }),
      { numRuns: 500 },
    );
  });

  it("leaves prototype-like names to qs", () => {
    for (const query of ["__proto__[id]=x", "constructor[prototype]=x", "a[__proto__]=x", "toString[id]=x"]) {
      expect(parseQuery(query)).toEqual(qs.parse(query, QS_OPTIONS));
      expect(({} as Record<string, unknown>).id).toBeUndefined();
    }
  });

  it("decodes what needs decoding", () => {
    expect(parseQuery("organization[sub_domain]=a%20b")).toEqual({ organization: { sub_domain: "a b" } });
    expect(parseQuery("organization[sub_domain]=a+b")).toEqual({ organization: { sub_domain: "a b" } });
  });
});
