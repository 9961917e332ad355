/**
 * Undo stack for multi-step side effects (Incus' reverter): each step pushes how to
 * undo itself; on failure the stack unwinds newest first, on success it is dropped.
 */
export class Reverter {
  private readonly undo: { label: string; action: () => Promise<void> | void }[] = [];

  add(label: string, action: () => Promise<void> | void): void {
    this.undo.push({ label, action });
  }

  /** Runs every undo step, newest first; an undo that fails does not stop the others. */
  async revert(): Promise<string[]> {
    const failures: string[] = [];
    while (this.undo.length > 0) {
      const step = this.undo.pop()!;
      try {
        await step.action();
      } catch (error) {
        failures.push(`${step.label}: ${(error as Error).message}`);
      }
    }
    return failures;
  }

  success(): void {
    this.undo.length = 0;
  }

  get size(): number {
    return this.undo.length;
  }
}

/** Runs `body` with a reverter; on any failure the reverter unwinds and the error is rethrown. */
export async function withReverter<T>(body: (reverter: Reverter) => Promise<T>): Promise<T> {
  const reverter = new Reverter();
  try {
    const result = await body(reverter);
    reverter.success();
    return result;
  } catch (error) {
    await reverter.revert();
    throw error;
  }
}
