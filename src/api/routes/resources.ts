import { addSshKeyRow, deleteSshKey } from "../../catalog/ssh-keys.js";
import { AddressesExhausted, allocateToOrganization } from "../../lifecycle/index.js";
import { canonicalAddress } from "../../catalog/addresses.js";
import { ApiError } from "../../errors.js";
import {
  booleanArgument,
  enumArgument,
  keyValueArray,
  pagination,
  requireLookup,
  requireString,
  stringArgument,
} from "../arguments.js";
import type { Operation } from "../operation.js";
import { pageOf } from "../paging.js";
import * as present from "../presenters.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";
import { ipAddressView, virtualMachineListItem } from "../views.js";

/** Virtual machines (read), IP addresses and SSH keys: what an organization owns. */
export const resourceOperations: Operation[] = [
  {
    name: "list_virtual_machines",
    method: "GET",
    path: "/organizations/organization/virtual_machines",
    scopes: ["virtual_machines", "virtual_machines:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db } = context.services;
      const org = await resolveOrganization(context);
      const page = pagination(context.args);
      const filters = keyValueArray(context.args, "annotations");
      let base = db
        .selectFrom("virtual_machines")
        .where("organization_id", "=", org.id)
        .where("deleted_at", "is", null);
      for (const filter of filters) {
        base = base.where("id", "in", (eb) =>
          eb
            .selectFrom("annotations")
            .select("object_id")
            .where("object_type", "=", "VirtualMachine")
            .where("key", "=", filter.key)
            .where("value", "=", filter.value),
        );
      }
      const { pagination: paged, items: rows } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("created_at").orderBy("id"),
      );
      return {
        body: {
          pagination: paged,
          virtual_machines: await Promise.all(rows.map((vm) => virtualMachineListItem(db, vm))),
        },
      };
    },
  },
  {
    name: "list_ip_addresses",
    method: "GET",
    path: "/organizations/organization/ip_addresses",
    scopes: ["ip_addresses", "ip_addresses:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const org = await resolveOrganization(context);
      const page = pagination(context.args);
      const allocated = booleanArgument(context.args, "allocated");
      let base = db.selectFrom("ip_addresses").where("organization_id", "=", org.id);
      if (allocated === true) base = base.where("allocation_id", "is not", null);
      if (allocated === false) base = base.where("allocation_id", "is", null);
      const { pagination: paged, items: rows } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("ip_version").orderBy("address_key"),
      );
      return {
        body: {
          pagination: paged,
          ip_addresses: rows.map((ip) => present.ipAddressListItem(ip, baseDomain)),
        },
      };
    },
  },
  {
    name: "get_ip_address",
    method: "GET",
    path: "/ip_addresses/ip_address",
    scopes: ["ip_addresses", "ip_addresses:read"],
    access: "read",
    bucket: "read",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const lookup = requireLookup(
        context.args,
        "ip_address",
        ["id", "address"] as const,
        context.segments.ip_address,
      );
      const value =
        lookup.key === "address" ? (canonicalAddress(lookup.value) ?? lookup.value) : lookup.value;
      const candidates = await db
        .selectFrom("ip_addresses")
        .selectAll()
        .where(lookup.key, "=", value)
        .execute();
      // The same address may exist in several organizations' networks; only the caller's counts.
      let ip = undefined as (typeof candidates)[number] | undefined;
      for (const candidate of candidates) {
        try {
          await checkOwnership(context, candidate.organization_id, "ip_address_not_found");
          ip = candidate;
          break;
        } catch (error) {
          if (!(error instanceof ApiError) || error.code !== "ip_address_not_found") throw error;
        }
      }
      if (!ip) throw new ApiError("ip_address_not_found");
      let allocation: { id: string; name: string } | null = null;
      if (ip.allocation_type === "VirtualMachine" && ip.allocation_id) {
        const vm = await db
          .selectFrom("virtual_machines")
          .select(["id", "name"])
          .where("id", "=", ip.allocation_id)
          .executeTakeFirst();
        allocation = vm ? { id: vm.id, name: vm.name } : null;
      }
      return { body: { ip_address: await ipAddressView(db, ip.id, baseDomain), allocation } };
    },
  },
  {
    name: "create_ip_address",
    method: "POST",
    path: "/organizations/organization/ip_addresses",
    scopes: ["ip_addresses"],
    access: "write",
    bucket: "write",
    async handle(context) {
      const { db, baseDomain } = context.services;
      const org = await resolveOrganization(context);
      const networkLookup = requireLookup(context.args, "network", ["id", "permalink"] as const);
      const network = await db
        .selectFrom("networks")
        .selectAll()
        .where(networkLookup.key, "=", networkLookup.value)
        .executeTakeFirst();
      if (!network) throw new ApiError("network_not_found");
      const version = enumArgument(context.args, "version", ["ipv4", "ipv6"] as const);
      if (!version)
        throw new ApiError(
          "missing_required_argument",
          { path: ["version"], argument: { name: "version", description: null } },
          "The 'version' argument is required but has not been provided",
        );
      const vip = booleanArgument(context.args, "vip") ?? false;
      const label = stringArgument(context.args, "label", { maxLength: 255 }) ?? null;
      if (vip && !label) throw new ApiError("validation_error", { errors: ["Label can't be blank"] });
      try {
        const ip = await allocateToOrganization(db, {
          networkId: network.id,
          version: version === "ipv4" ? 4 : 6,
          organizationId: org.id,
          vip,
          label,
        });
        return { body: { ip_address: await ipAddressView(db, ip.id, baseDomain) } };
      } catch (error) {
        if (error instanceof AddressesExhausted) throw new ApiError("no_available_addresses");
        throw error;
      }
    },
  },
  {
    name: "list_ssh_keys",
    method: "GET",
    path: "/organizations/organization/ssh_keys",
    scopes: [],
    access: "read",
    bucket: "read",
    async handle(context) {
      const org = await resolveOrganization(context);
      const page = pagination(context.args);
      const base = context.services.db.selectFrom("ssh_keys").where("organization_id", "=", org.id);
      const { pagination: paged, items: rows } = await pageOf(page, base, (q) =>
        q.selectAll().orderBy("created_at").orderBy("id"),
      );
      return { body: { pagination: paged, ssh_keys: rows.map(present.sshKey) } };
    },
  },
  {
    name: "add_ssh_key",
    method: "POST",
    path: "/organizations/organization/ssh_keys",
    scopes: [],
    access: "write",
    bucket: "write",
    async handle(context) {
      const org = await resolveOrganization(context);
      // The schema names the key's properties `ssh_key`; older clients sent `properties`.
      const properties = context.args.ssh_key ?? context.args.properties;
      const source =
        properties && typeof properties === "object" && !Array.isArray(properties)
          ? properties
          : context.args;
      const name = requireString(source, "name", { maxLength: 255 });
      const publicKey = requireString(source, "key", { maxLength: 16 * 1024 });
      const result = await addSshKeyRow(context.services.db, {
        organizationId: org.id,
        userId: context.identity.userId,
        name,
        publicKey,
      });
      if ("error" in result) throw new ApiError("validation_error", { errors: [result.error] });
      return { status: 201, body: { ssh_key: present.sshKey(result.row) } };
    },
  },
  {
    name: "delete_ssh_key",
    method: "DELETE",
    path: "/ssh_keys/ssh_key",
    scopes: [],
    access: "write",
    bucket: "write",
    async handle(context) {
      const lookup = requireLookup(context.args, "ssh_key", ["id"] as const, context.segments.ssh_key);
      const key = await context.services.db
        .selectFrom("ssh_keys")
        .selectAll()
        .where("id", "=", lookup.value)
        .executeTakeFirst();
      if (!key) throw new ApiError("ssh_key_not_found");
      await checkOwnership(context, key.organization_id, "ssh_key_not_found");
      await deleteSshKey(context.services.db, key.id);
      return { body: { ssh_key: present.sshKey(key) } };
    },
  },
];
