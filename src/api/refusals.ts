/** Runs a lifecycle change, answering its refusals in Katapult's words (`translate` maps them to ApiErrors). */
export async function inKatapultWords<T>(
  translate: (error: unknown) => unknown,
  change: () => Promise<T>,
): Promise<T> {
  try {
    return await change();
  } catch (error) {
    throw translate(error);
  }
}
