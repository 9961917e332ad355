import type { Kysely } from "kysely";
import {
  insertRow,
  lockedForUpdate,
  newId,
  retryingConflicts,
  transactionQuery,
  type Database,
  type Row,
} from "../store/index.js";
import {
  addressKey,
  bigIntToAddress,
  bigIntToKey,
  keyToBigInt,
  type IpVersion,
} from "../catalog/addresses.js";
import { ensureWithinLimits, lockOrganization } from "./organization-limits.js";
import type { OrganizationLimits } from "./quota.js";

/** Raised when a network has no free address of the wanted version. */
export class AddressesExhausted extends Error {}

export interface AllocationRequest {
  networkId: string;
  version: IpVersion;
  /** A subnet the spec named; otherwise any subnet of the network with that version. */
  subnetId: string | null;
  organizationId: string;
  allocationType: string | null;
  allocationId: string | null;
  /** The VM interface it goes on, when allocated to a VM. */
  networkInterfaceId?: string | null;
  /** Made for that VM: back to the pool when it is purged. */
  releaseWithVm?: boolean;
  reverseDns: string | null;
}

/**
 * A network's subnets of one IP version. On PostgreSQL they are locked, in ID order, for
 * the rest of the transaction: all of them, also when the spec names one.
 */
const subnetsOf = transactionQuery(
  (d, networkId: string, version: IpVersion) =>
    lockedForUpdate(
      d,
      d
        .selectFrom("subnets")
        .selectAll()
        .where("network_id", "=", networkId)
        .where("ip_version", "=", version)
        .orderBy("id"),
    ),
  2,
);

const highestAddressKey = transactionQuery(
  (d, networkId: string, startKey: string, endKey: string) =>
    d
      .selectFrom("ip_addresses")
      .select((eb) => eb.fn.max("address_key").as("key"))
      .where("network_id", "=", networkId)
      .where("address_key", ">=", startKey)
      .where("address_key", "<=", endKey),
  3,
);

/**
 * Takes the next free address inside a transaction. The unique index on
 * (network, address) is what guarantees no address is ever held twice; on
 * PostgreSQL the subnet rows are also locked (FOR UPDATE, in ID order) so that
 * concurrent builds queue for a subnet instead of colliding.
 */
export async function allocateAddress(
  trx: Kysely<Database>,
  request: AllocationRequest,
): Promise<Row<"ip_addresses">> {
  const subnets = request.subnetId
    ? await subnetsOf(trx, request.networkId, request.version).then((all) =>
        all.filter((subnet) => subnet.id === request.subnetId),
      )
    : await subnetsOf(trx, request.networkId, request.version);
  for (const subnet of subnets) {
    const start = keyToBigInt(addressKey(subnet.range_start));
    const end = keyToBigInt(addressKey(subnet.range_end));
    const candidate = await nextFree(trx, request.networkId, start, end, request.version);
    if (candidate === undefined) continue;
    const row: Row<"ip_addresses"> = {
      id: newId("ipAddress"),
      organization_id: request.organizationId,
      network_id: request.networkId,
      subnet_id: subnet.id,
      ip_version: request.version,
      address: bigIntToAddress(candidate, request.version),
      address_key: bigIntToKey(candidate, request.version),
      reverse_dns: request.reverseDns,
      vip: 0,
      label: null,
      allocation_type: request.allocationType,
      allocation_id: request.allocationId,
      network_interface_id: request.networkInterfaceId ?? null,
      release_with_vm: request.releaseWithVm ? 1 : 0,
      created_at: Math.floor(Date.now() / 1000),
    };
    await insertRow(trx, "ip_addresses", row);
    return row;
  }
  throw new AddressesExhausted(`no free IPv${request.version} address`);
}

/**
 * The lowest free address in [start, end]: just past the highest one in use when there
 * is room (one indexed lookup), else the first gap left by released addresses.
 */
async function nextFree(
  trx: Kysely<Database>,
  networkId: string,
  start: bigint,
  end: bigint,
  version: IpVersion,
): Promise<bigint | undefined> {
  const startKey = bigIntToKey(start, version);
  const endKey = bigIntToKey(end, version);
  const [highest] = await highestAddressKey(trx, networkId, startKey, endKey);
  if (!highest?.key) return start;
  const next = keyToBigInt(highest.key) + 1n;
  if (next <= end) return next;
  const used = await trx
    .selectFrom("ip_addresses")
    .select("address_key")
    .where("network_id", "=", networkId)
    .where("address_key", ">=", startKey)
    .where("address_key", "<=", endKey)
    .orderBy("address_key")
    .execute();
  let expected = start;
  for (const { address_key } of used) {
    const value = keyToBigInt(address_key);
    if (value > expected) return expected;
    expected = value + 1n;
  }
  return expected <= end ? expected : undefined;
}

/** Is this a unique-constraint violation (SQLite or PostgreSQL)? */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  return (
    e?.code === "23505" ||
    e?.code === "SQLITE_CONSTRAINT_UNIQUE" ||
    e?.code === "SQLITE_CONSTRAINT_PRIMARYKEY" ||
    (typeof e?.message === "string" && /UNIQUE constraint failed/.test(e.message))
  );
}

/**
 * A free address of a network, allocated to the organization and attached to nothing
 * (`create_ip_address`), with its VIP flag and label.
 */
export function allocateToOrganization(
  db: Kysely<Database>,
  request: {
    networkId: string;
    version: IpVersion;
    organizationId: string;
    vip: boolean;
    label: string | null;
    defaultLimits: OrganizationLimits;
  },
): Promise<Row<"ip_addresses">> {
  return retryingConflicts(() =>
    db.transaction().execute(async (trx) => {
      await lockOrganization(trx, request.organizationId);
      await ensureWithinLimits(
        trx,
        { organizationId: request.organizationId, defaults: request.defaultLimits },
        { unallocated_ip_addresses: 1 },
      );
      const row = await allocateAddress(trx, {
        networkId: request.networkId,
        version: request.version,
        subnetId: null,
        organizationId: request.organizationId,
        allocationType: null,
        allocationId: null,
        reverseDns: null,
      });
      if (!request.vip && !request.label) return row;
      const vip = request.vip ? 1 : 0;
      await trx
        .updateTable("ip_addresses")
        .set({ vip, label: request.label })
        .where("id", "=", row.id)
        .execute();
      return { ...row, vip, label: request.label };
    }),
  );
}
