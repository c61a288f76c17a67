/** Entry point of the `queue` handler: routes each batch by the queue it came from. */
export async function handleQueue(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  void env;
  void ctx;
  // Filled in by the change-propagation consumer (issue 5). Until then, ack so nothing loops.
  batch.ackAll();
}
