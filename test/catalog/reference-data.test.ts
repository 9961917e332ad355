import { describe, expect, it } from "vitest";
import { country, currency, isKnownCountry, isKnownCurrency } from "../../src/catalog/reference-data.js";

const PROTOTYPE_NAMES = ["constructor", "toString", "valueOf", "__proto__", "hasOwnProperty"];

describe("reference data", () => {
  it("knows its ISO codes and nothing from Object.prototype", () => {
    expect(isKnownCountry("GB")).toBe(true);
    expect(isKnownCurrency("EUR")).toBe(true);
    for (const name of PROTOTYPE_NAMES) {
      expect(isKnownCountry(name), name).toBe(false);
      expect(isKnownCurrency(name), name).toBe(false);
    }
  });

  it("describes an unknown code by the code itself", () => {
    expect(country("GB")).toMatchObject({ name: "United Kingdom", iso_code3: "GBR", eu: false });
    for (const name of PROTOTYPE_NAMES) {
      expect(country(name, "Somewhere")).toMatchObject({
        name: "Somewhere",
        iso_code3: name,
        time_zone: null,
      });
      expect(currency(name)).toMatchObject({ name, symbol: name });
    }
  });
});
