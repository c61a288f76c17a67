/** Entry point of the `scheduled` handler; each periodic job registers here. */
export async function handleScheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext): Promise<void> {
  void controller;
  void env;
  void ctx;
}
