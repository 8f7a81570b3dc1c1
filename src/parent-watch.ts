/**
 * Watches the process that started this daemon. DataCat clients start one daemon per
 * application (writing a JSON config and setting DATACAT_CONFIG) and expect it to notice when
 * the application dies; `exit_with_parent` asks for the same otherwise. A daemon started by hand
 * or by a service manager is not watched.
 *
 * The parent is gone when the daemon has been re-parented (getppid changed) or signal 0 to it
 * fails; checked twice a second, which costs one syscall.
 */
export function watchParent(onExit: (parentPid: number) => void, intervalMs = 500): { stop(): void; parentPid: number } | null {
  const parentPid = process.ppid;
  if (parentPid <= 1) return null; // started by init or a service manager: nothing to watch
  const timer = setInterval(() => {
    if (process.ppid === parentPid && alive(parentPid)) return;
    clearInterval(timer);
    onExit(parentPid);
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer), parentPid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
