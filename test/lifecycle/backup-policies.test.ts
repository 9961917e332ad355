/** The schedule arithmetic of disk backup policies (pure). */
import { describe, expect, it } from "vitest";
import { nextInvocation, type BackupSchedule } from "../../src/lifecycle/index.js";

const at = (iso: string) => Date.parse(iso) / 1000;
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
const schedule = (s: Partial<BackupSchedule> & Pick<BackupSchedule, "interval">): BackupSchedule => ({
  frequency: 1,
  time: 0,
  minute: 0,
  ...s,
});

describe("a backup schedule's next run", () => {
  const anchor = at("2026-12-02T10:20:00Z");

  it("hourly: at its minute, every `frequency` hours from the anchor's hour", () => {
    const hourly = schedule({ interval: "hourly", minute: 45 });
    expect(iso(nextInvocation(hourly, anchor, anchor))).toBe("2026-12-02T10:45:00.000Z");
    expect(iso(nextInvocation(hourly, anchor, at("2026-12-02T10:45:00Z")))).toBe("2026-12-02T11:45:00.000Z");
    const everyThree = schedule({ interval: "hourly", frequency: 3, minute: 5 });
    expect(iso(nextInvocation(everyThree, anchor, at("2026-12-02T10:30:00Z")))).toBe(
      "2026-12-02T13:05:00.000Z",
    );
  });

  it("daily and weekly: at their time and minute", () => {
    const daily = schedule({ interval: "daily", time: 3, minute: 30 });
    expect(iso(nextInvocation(daily, anchor, anchor))).toBe("2026-12-03T03:30:00.000Z");
    const late = schedule({ interval: "daily", time: 23 });
    expect(iso(nextInvocation(late, anchor, anchor))).toBe("2026-12-02T23:00:00.000Z");
    const weekly = schedule({ interval: "weekly", time: 1 });
    expect(iso(nextInvocation(weekly, anchor, at("2027-01-01T00:00:00Z")))).toBe("2027-01-06T01:00:00.000Z");
  });

  it("monthly: on the anchor's day, or the month's last day when it is shorter", () => {
    const endOfMonth = at("2027-01-31T12:00:00Z");
    const monthly = schedule({ interval: "monthly", time: 2 });
    expect(iso(nextInvocation(monthly, endOfMonth, endOfMonth))).toBe("2027-02-28T02:00:00.000Z");
    expect(iso(nextInvocation(monthly, endOfMonth, at("2027-02-28T02:00:00Z")))).toBe(
      "2027-03-31T02:00:00.000Z",
    );
  });

  it("is always after the moment asked about, years on", () => {
    for (const interval of ["hourly", "daily", "weekly", "monthly"] as const) {
      const later = at("2031-06-15T08:00:00Z");
      const next = nextInvocation(schedule({ interval, frequency: 2, minute: 7 }), anchor, later);
      expect(next).toBeGreaterThan(later);
      expect(next - later).toBeLessThanOrEqual(62 * 24 * 3600);
    }
  });
});
