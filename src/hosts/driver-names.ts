/** The host drivers a catalog host may name in `driver` (see registry.ts for what each is). */
export const DRIVER_NAMES = ["qemu", "fake"] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

export function isDriverName(name: string): name is DriverName {
  return (DRIVER_NAMES as readonly string[]).includes(name);
}
