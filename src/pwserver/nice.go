package pwserver

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// adminNice is how much lower than the query readers admin work runs. A
// bulk import decodes and indexes a million users; on a small host that
// work must yield the CPU to the UDP readers, whose answers other daemons
// wait for (the paper's reload "in a separate thread while queries go on").
const adminNice = 10

// lowerPriority pins the calling goroutine to its own OS thread and lowers
// that thread's scheduling priority. It never unlocks: when the goroutine
// returns, the runtime ends the thread, and the lowered priority with it,
// so no other goroutine ever inherits it.
func lowerPriority() {
	runtime.LockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), adminNice)
}
