import { createHash } from "node:crypto";

/** Countries and currencies the API embeds in objects, keyed by ISO code. */
export interface Country {
  id: string;
  name: string;
  iso_code2: string;
  iso_code3: string;
  time_zone: string | null;
  eu: boolean;
}

export interface Currency {
  id: string;
  name: string;
  iso_code: string;
  symbol: string;
}

const COUNTRIES: Record<string, Omit<Country, "id" | "iso_code2">> = {
  GB: { name: "United Kingdom", iso_code3: "GBR", time_zone: "Europe/London", eu: false },
  NL: { name: "Netherlands", iso_code3: "NLD", time_zone: "Europe/Amsterdam", eu: true },
  DE: { name: "Germany", iso_code3: "DEU", time_zone: "Europe/Berlin", eu: true },
  FR: { name: "France", iso_code3: "FRA", time_zone: "Europe/Paris", eu: true },
  IE: { name: "Ireland", iso_code3: "IRL", time_zone: "Europe/Dublin", eu: true },
  US: { name: "United States", iso_code3: "USA", time_zone: "America/New_York", eu: false },
  CA: { name: "Canada", iso_code3: "CAN", time_zone: "America/Toronto", eu: false },
  JP: { name: "Japan", iso_code3: "JPN", time_zone: "Asia/Tokyo", eu: false },
  AU: { name: "Australia", iso_code3: "AUS", time_zone: "Australia/Sydney", eu: false },
};

const CURRENCIES: Record<string, Omit<Currency, "id" | "iso_code">> = {
  GBP: { name: "British Pound", symbol: "£" },
  EUR: { name: "Euro", symbol: "€" },
  USD: { name: "US Dollar", symbol: "$" },
  JPY: { name: "Japanese Yen", symbol: "¥" },
  AUD: { name: "Australian Dollar", symbol: "A$" },
  CAD: { name: "Canadian Dollar", symbol: "C$" },
};

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A stable ID for reference data: the same seed always gives the same ID. */
export function stableId(prefix: string, seed: string): string {
  const digest = createHash("sha256").update(`${prefix}:${seed}`).digest();
  let suffix = "";
  for (let i = 0; i < 16; i++) suffix += ALPHANUMERIC[digest[i]! % ALPHANUMERIC.length];
  return `${prefix}_${suffix}`;
}

export function isKnownCountry(code: string): boolean {
  return Object.hasOwn(COUNTRIES, code);
}

export function isKnownCurrency(code: string): boolean {
  return Object.hasOwn(CURRENCIES, code);
}

export function country(code: string, fallbackName?: string): Country {
  const known = Object.hasOwn(COUNTRIES, code) ? COUNTRIES[code] : undefined;
  return {
    id: stableId("ctry", code),
    name: known?.name ?? fallbackName ?? code,
    iso_code2: code,
    iso_code3: known?.iso_code3 ?? code,
    time_zone: known?.time_zone ?? null,
    eu: known?.eu ?? false,
  };
}

export function currency(code: string): Currency {
  const known = Object.hasOwn(CURRENCIES, code) ? CURRENCIES[code] : undefined;
  return {
    id: stableId("cur", code),
    name: known?.name ?? code,
    iso_code: code,
    symbol: known?.symbol ?? code,
  };
}

export const KNOWN_COUNTRIES = Object.keys(COUNTRIES);
export const KNOWN_CURRENCIES = Object.keys(CURRENCIES);
