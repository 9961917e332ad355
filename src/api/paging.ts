import { sql, type SelectQueryBuilder } from "kysely";
import { paginationObject, type Page } from "./arguments.js";

/** One page of a query's rows and the pagination object: `order` adds the columns and the order. */
export async function pageOf<DB, TB extends keyof DB, O>(
  page: Page,
  base: SelectQueryBuilder<DB, TB, object>,
  order: (query: SelectQueryBuilder<DB, TB, object>) => SelectQueryBuilder<DB, TB, O>,
): Promise<{ pagination: ReturnType<typeof paginationObject>; items: O[] }> {
  const counted = (await base.select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow()) as {
    n: number | string;
  };
  const items = await order(base)
    .limit(page.perPage)
    .offset((page.page - 1) * page.perPage)
    .execute();
  return { pagination: paginationObject(page, Number(counted.n)), items: items as O[] };
}
