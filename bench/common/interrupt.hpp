// ^C and SIGTERM in a benchmark driver. The handler only sets a flag; the
// driver's loops check it and unwind by throwing Interrupted, so every
// destructor on the way out runs: children are killed and reaped, scratch
// files removed. A handler that exited on the spot would leave both behind.
#pragma once

#include <functional>
#include <stdexcept>

namespace mpod_bench {

// Thrown by throw_if_interrupted() once SIGINT or SIGTERM arrived.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Throws Interrupted if SIGINT or SIGTERM arrived since run_interruptible()
// installed its handler; otherwise does nothing.
void throw_if_interrupted();

// A driver's main once its options are parsed: installs the SIGINT/SIGTERM
// handler (without SA_RESTART, so a blocked poll returns and the run unwinds),
// then returns run()'s exit code; 130 after printing "<program>: interrupted;
// <cleaned_up>" if it was interrupted, or 1 after "<program>: <what>" if it
// threw any other std::exception.
int run_interruptible(const char* program, const char* cleaned_up, const std::function<int()>& run);

}  // namespace mpod_bench
