import { addSshKeyRow, deleteSshKey } from "../../catalog/ssh-keys.js";
import { ApiError } from "../../errors.js";
import { keyValueArray, pagination, requireLookup, requireString } from "../arguments.js";
import type { Operation } from "../operation.js";
import { pageOf } from "../paging.js";
import * as present from "../presenters.js";
import { checkOwnership, resolveOrganization } from "../resolve.js";
import { virtualMachineListItem } from "../views.js";

/** Virtual machines (read) and SSH keys: what an organization owns. */
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
