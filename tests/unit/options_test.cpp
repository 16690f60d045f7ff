// parse_options: every option in each of its spellings, where parsing stops,
// and the error for each kind of bad input (code invalid_argument, message
// naming the option). Complements options_parse_test.cpp.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/options.hpp"

namespace mpod {
namespace {

// Builds a mutable argv ("prog" + args) and parses it.
struct Argv {
  explicit Argv(std::vector<std::string> args) : strings(std::move(args)) {
    strings.insert(strings.begin(), "prog");
    for (auto& s : strings) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);  // like a real argv
  }
  int argc() const { return static_cast<int>(strings.size()); }
  char** argv() { return ptrs.data(); }
  std::vector<std::string> strings;
  std::vector<char*> ptrs;
};

struct Result {
  Options o;
  int first = -1;
};

Result parse(std::vector<std::string> args) {
  Argv a(std::move(args));
  Result r;
  r.first = parse_options(a.argc(), a.argv(), r.o);
  return r;
}

// The error parse() throws, as "code|message"; "" if it does not throw.
struct Failure {
  bool threw = false;
  Errc code = Errc::system;
  std::string message;
};
Failure fail(std::vector<std::string> args) {
  Failure f;
  try {
    parse(std::move(args));
  } catch (const Error& e) {
    f.threw = true;
    f.code = e.code();
    f.message = e.what();
  }
  return f;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// --log-level changes process-wide state: put it back after every test.
class OptionsTest : public testing::Test {
 protected:
  void TearDown() override { log::set_level("", "notice"); }

  // Checks that `args` fails with invalid_argument and a message containing each of `needles`.
  static void expect_rejected(std::vector<std::string> args,
                              std::initializer_list<std::string> needles) {
    std::string shown;
    for (auto& a : args) shown += "'" + a + "' ";
    Failure f = fail(args);
    ASSERT_TRUE(f.threw) << "accepted: " << shown;
    EXPECT_EQ(f.code, Errc::invalid_argument) << shown << f.message;
    for (auto& n : needles) EXPECT_TRUE(contains(f.message, n)) << shown << "-> " << f.message << " lacks " << n;
  }
};

// Each valued option, alone, as --opt=value and as --opt value.
TEST_F(OptionsTest, EachValuedOptionInBothSpellings) {
  struct Case {
    const char* name;
    const char* value;
    void (*check)(const Options&);
  };
  const Case cases[] = {
      {"--proc-type", "secondary", [](const Options& o) { EXPECT_EQ(o.proc_type, ProcType::secondary); }},
      {"--proc-type", "primary", [](const Options& o) { EXPECT_EQ(o.proc_type, ProcType::primary); }},
      {"--proc-type", "auto", [](const Options& o) { EXPECT_EQ(o.proc_type, ProcType::automatic); }},
      {"--file-prefix", "my_app-1.2", [](const Options& o) { EXPECT_EQ(o.file_prefix, "my_app-1.2"); }},
      {"--runtime-dir", "/run/x y", [](const Options& o) { EXPECT_EQ(o.runtime_dir, "/run/x y"); }},
      {"--huge-dir", "/dev/hugepages", [](const Options& o) { EXPECT_EQ(o.huge_dir, "/dev/hugepages"); }},
      {"--memory", "256", [](const Options& o) { EXPECT_EQ(o.memory_mb, 256u); }},
      {"--memory", "1048576", [](const Options& o) { EXPECT_EQ(o.memory_mb, 1048576u); }},
      {"-m", "1", [](const Options& o) { EXPECT_EQ(o.memory_mb, 1u); }},
      {"--base-virtaddr", "0x4000000000", [](const Options& o) { EXPECT_EQ(o.base_virtaddr, 0x4000000000u); }},
      {"--base-virtaddr", "1073741824", [](const Options& o) { EXPECT_EQ(o.base_virtaddr, 1073741824u); }},
      {"--wait-primary", "0", [](const Options& o) { EXPECT_EQ(o.wait_primary_s, 0.0); }},
      {"--wait-primary", "0.25", [](const Options& o) { EXPECT_DOUBLE_EQ(o.wait_primary_s, 0.25); }},
      {"--wait-primary", "1e2", [](const Options& o) { EXPECT_DOUBLE_EQ(o.wait_primary_s, 100.0); }},
      {"--log-level", "ipc:info", [](const Options& o) {
         ASSERT_EQ(o.log_levels.size(), 1u);
         EXPECT_EQ(o.log_levels[0], "ipc:info");
         EXPECT_EQ(log::level(Component::ipc), LogLevel::info);
       }},
  };
  for (const auto& c : cases) {
    const std::string name = c.name, value = c.value;
    for (int form = 0; form < 2; ++form) {
      SCOPED_TRACE(name + (form ? " " : "=") + value);
      log::set_level("", "notice");
      // Short -m has no "=" form: "-m=1" means the value "=1". Its glued form is -m1.
      std::vector<std::string> args =
          form ? std::vector<std::string>{name, value}
               : (name == "-m" ? std::vector<std::string>{name + value}
                               : std::vector<std::string>{name + "=" + value});
      args.push_back("app");
      auto r = parse(args);
      EXPECT_EQ(r.first, static_cast<int>(args.size()));  // "app" is argv[args.size()]
      c.check(r.o);
    }
  }
}

TEST_F(OptionsTest, ShortMemoryOptionGluedAndSeparate) {
  EXPECT_EQ(parse({"-m64"}).o.memory_mb, 64u);
  EXPECT_EQ(parse({"-m", "64"}).o.memory_mb, 64u);
  EXPECT_EQ(parse({"-m64"}).first, 2);
  EXPECT_EQ(parse({"-m", "64"}).first, 3);
  EXPECT_EQ(parse({"--memory", "64", "-m", "128"}).o.memory_mb, 128u) << "the last one wins";
}

TEST_F(OptionsTest, DefaultsWhenNothingIsGiven) {
  auto r = parse({});
  EXPECT_EQ(r.first, 1);
  EXPECT_EQ(r.o.proc_type, ProcType::primary);
  EXPECT_EQ(r.o.file_prefix, "mpod");
  EXPECT_TRUE(r.o.runtime_dir.empty());
  EXPECT_TRUE(r.o.huge_dir.empty());
  EXPECT_FALSE(r.o.no_huge);
  EXPECT_EQ(r.o.memory_mb, 0u);
  EXPECT_EQ(r.o.base_virtaddr, 0u);
  EXPECT_EQ(r.o.wait_primary_s, 0.0);
  EXPECT_TRUE(r.o.log_levels.empty());
}

TEST_F(OptionsTest, NoHugeIsAFlag) {
  auto r = parse({"--no-huge"});
  EXPECT_TRUE(r.o.no_huge);
  EXPECT_EQ(r.first, 2);
  expect_rejected({"--no-huge=1"}, {"--no-huge", "takes no value"});
  expect_rejected({"--no-huge="}, {"--no-huge", "takes no value"});
  // A flag does not swallow the next argument.
  r = parse({"--no-huge", "app"});
  EXPECT_EQ(r.first, 2);
}

TEST_F(OptionsTest, RepeatedLogLevelsAreKeptInOrderAndApplied) {
  auto r = parse({"--log-level=debug", "--log-level", "memory:error", "--log-level=lib.eal:warning"});
  ASSERT_EQ(r.o.log_levels.size(), 3u);
  EXPECT_EQ(r.o.log_levels[0], "debug");
  EXPECT_EQ(r.o.log_levels[1], "memory:error");
  EXPECT_EQ(r.o.log_levels[2], "lib.eal:warning");
  EXPECT_EQ(log::level(Component::memory), LogLevel::error);
  EXPECT_EQ(log::level(Component::runtime), LogLevel::warning);  // lib.eal
  EXPECT_EQ(log::level(Component::ipc), LogLevel::debug);        // from the first, global one
  EXPECT_EQ(r.first, 5);
}

TEST_F(OptionsTest, StopsAtDoubleDashWhichIsSkipped) {
  auto r = parse({"--file-prefix=a", "--", "--file-prefix=b", "x"});
  EXPECT_EQ(r.first, 3);  // argv[3] == "--file-prefix=b": the application's
  EXPECT_EQ(r.o.file_prefix, "a");
  EXPECT_EQ(parse({"--"}).first, 2);
  EXPECT_EQ(parse({"--", "--"}).first, 2);
  EXPECT_EQ(parse({"-m", "8", "--"}).first, 4);
  // "--" consumed as an option's value is not the terminator.
  EXPECT_EQ(parse({"--runtime-dir", "--", "app"}).o.runtime_dir, "--");
}

TEST_F(OptionsTest, StopsAtTheFirstNonOption) {
  auto r = parse({"--no-huge", "app", "--bogus", "-m", "abc"});
  EXPECT_EQ(r.first, 2);  // nothing after "app" is looked at, so no error
  EXPECT_TRUE(r.o.no_huge);
  EXPECT_EQ(parse({"app"}).first, 1);
  EXPECT_EQ(parse({"-"}).first, 1) << "a lone '-' (stdin) is an application argument";
  EXPECT_EQ(parse({""}).first, 1) << "an empty argument is an application argument";
  EXPECT_EQ(parse({"-m", "4", "", "--bogus"}).first, 3);
}

TEST_F(OptionsTest, UnknownOptionsAreNamed) {
  expect_rejected({"--bogus"}, {"unknown option '--bogus'"});
  expect_rejected({"--bogus=3"}, {"'--bogus=3'"});
  expect_rejected({"-x"}, {"unknown option '-x'"});
  expect_rejected({"-xyz"}, {"'-xyz'"});
  expect_rejected({"--no-huge", "--memroy=64"}, {"'--memroy=64'"});
  expect_rejected({"---memory=64"}, {"'---memory=64'"});
  expect_rejected({"--Memory=64"}, {"'--Memory=64'"});  // names are case-sensitive
  // Every message points at the help.
  EXPECT_TRUE(contains(fail({"--bogus"}).message, "--help"));
}

TEST_F(OptionsTest, MissingValuesNameTheOption) {
  for (const char* opt : {"--proc-type", "--file-prefix", "--runtime-dir", "--huge-dir", "--memory", "-m",
                          "--base-virtaddr", "--wait-primary", "--log-level"}) {
    SCOPED_TRACE(opt);
    expect_rejected({opt}, {std::string("option ") + opt + " needs a value"});
    expect_rejected({"--no-huge", opt}, {std::string(opt) + " needs a value"});
  }
}

TEST_F(OptionsTest, MalformedMemorySizes) {
  expect_rejected({"-m", "abc"}, {"-m", "'abc'"});
  expect_rejected({"-mabc"}, {"-m", "'abc'"});
  expect_rejected({"--memory=abc"}, {"--memory", "'abc'"});
  expect_rejected({"-m", "0"}, {"-m", "size"});
  expect_rejected({"-m0"}, {"-m", "size"});
  expect_rejected({"--memory=0"}, {"--memory"});
  expect_rejected({"-m", "-1"}, {"-m", "non-negative", "'-1'"});
  expect_rejected({"-m", "12MB"}, {"-m", "'12MB'"});
  expect_rejected({"-m", "1.5"}, {"-m", "'1.5'"});
  expect_rejected({"-m", ""}, {"-m"});
  expect_rejected({"--memory="}, {"--memory"});
  expect_rejected({"-m", "1048577"}, {"-m", "1048576"});
  expect_rejected({"-m", "99999999999999999999999"}, {"-m"});  // overflows uint64
  expect_rejected({"-m", "0x40"}, {"-m", "'0x40'"});            // decimal only
  expect_rejected({"-m=64"}, {"-m", "'=64'"});
}

TEST_F(OptionsTest, MalformedBaseVirtaddr) {
  const std::string page = std::to_string(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(parse({"--base-virtaddr=" + page}).o.base_virtaddr, std::stoull(page));
  expect_rejected({"--base-virtaddr=0x4000000001"}, {"--base-virtaddr", "page-aligned", "0x4000000001"});
  expect_rejected({"--base-virtaddr=0x1001"}, {"--base-virtaddr", "page-aligned"});
  expect_rejected({"--base-virtaddr=0"}, {"--base-virtaddr"});
  expect_rejected({"--base-virtaddr=0x800000000000"}, {"--base-virtaddr"});  // not user space
  expect_rejected({"--base-virtaddr=0xffffffffffff0000"}, {"--base-virtaddr"});
  expect_rejected({"--base-virtaddr=zz"}, {"--base-virtaddr", "'zz'"});
  expect_rejected({"--base-virtaddr=0x40000000zz"}, {"--base-virtaddr"});
  expect_rejected({"--base-virtaddr=-4096"}, {"--base-virtaddr", "non-negative"});
  expect_rejected({"--base-virtaddr="}, {"--base-virtaddr"});
}

TEST_F(OptionsTest, MalformedWaitPrimary) {
  expect_rejected({"--wait-primary=-1"}, {"--wait-primary", "'-1'"});
  expect_rejected({"--wait-primary", "-0.5"}, {"--wait-primary"});
  expect_rejected({"--wait-primary=soon"}, {"--wait-primary", "'soon'"});
  expect_rejected({"--wait-primary=1s"}, {"--wait-primary", "'1s'"});
  expect_rejected({"--wait-primary="}, {"--wait-primary"});
  expect_rejected({"--wait-primary=nan"}, {"--wait-primary"});
  expect_rejected({"--wait-primary=inf"}, {"--wait-primary"});
  expect_rejected({"--wait-primary=1e400"}, {"--wait-primary"});
}

TEST_F(OptionsTest, BadProcType) {
  expect_rejected({"--proc-type=boss"}, {"--proc-type", "'boss'", "primary, secondary or auto"});
  expect_rejected({"--proc-type=Primary"}, {"--proc-type"});
  expect_rejected({"--proc-type="}, {"--proc-type"});
}

TEST_F(OptionsTest, BadFilePrefix) {
  EXPECT_EQ(parse({"--file-prefix=" + std::string(64, 'p')}).o.file_prefix, std::string(64, 'p'));
  expect_rejected({"--file-prefix=a/b"}, {"--file-prefix", "'a/b'"});
  expect_rejected({"--file-prefix=/abs"}, {"--file-prefix"});
  expect_rejected({"--file-prefix="}, {"--file-prefix", "1 to 64"});
  expect_rejected({"--file-prefix", ""}, {"--file-prefix", "1 to 64"});
  expect_rejected({"--file-prefix=" + std::string(65, 'p')}, {"--file-prefix", "1 to 64"});
  expect_rejected({"--file-prefix=.."}, {"--file-prefix", "'..'"});
  expect_rejected({"--file-prefix=."}, {"--file-prefix", "'.'"});
  expect_rejected({"--file-prefix=a b"}, {"--file-prefix"});
  expect_rejected({"--file-prefix=a*"}, {"--file-prefix"});
  expect_rejected({"--file-prefix=a\nb"}, {"--file-prefix"});
}

TEST_F(OptionsTest, EmptyDirectoriesAreRejected) {
  expect_rejected({"--runtime-dir="}, {"--runtime-dir", "directory"});
  expect_rejected({"--huge-dir="}, {"--huge-dir", "directory"});
  expect_rejected({"--huge-dir", ""}, {"--huge-dir"});
}

TEST_F(OptionsTest, BadLogLevelsAreRejectedAndChangeNothing) {
  log::set_level("", "notice");
  expect_rejected({"--log-level=loud"}, {"--log-level", "'loud'"});
  expect_rejected({"--log-level=memory:loud"}, {"--log-level", "'memory:loud'"});
  expect_rejected({"--log-level=nosuch:debug"}, {"--log-level", "'nosuch:debug'"});
  expect_rejected({"--log-level="}, {"--log-level"});
  expect_rejected({"--log-level=memory:"}, {"--log-level"});
  expect_rejected({"--log-level=9"}, {"--log-level"});
  for (int c = 0; c < static_cast<int>(Component::count_); ++c)
    EXPECT_EQ(log::level(static_cast<Component>(c)), LogLevel::notice) << component_name(static_cast<Component>(c));
}

TEST_F(OptionsTest, ErrorStopsAtTheFirstBadOption) {
  // The error is about the first bad option, not a later one.
  Failure f = fail({"-m", "x", "--bogus"});
  ASSERT_TRUE(f.threw);
  EXPECT_TRUE(contains(f.message, "-m")) << f.message;
  EXPECT_FALSE(contains(f.message, "--bogus")) << f.message;
}

TEST_F(OptionsTest, UsageListsEveryOption) {
  std::string u = options_usage();
  for (const char* opt : {"--proc-type", "--file-prefix", "--runtime-dir", "--huge-dir", "--no-huge", "-m",
                          "--memory", "--base-virtaddr", "--wait-primary", "--log-level"})
    EXPECT_TRUE(contains(u, opt)) << opt;
}

// default_runtime_dir depends on the effective uid: check the non-root rules
// in a child that drops to an unprivileged uid (when we are root).
TEST_F(OptionsTest, DefaultRuntimeDir) {
  if (geteuid() != 0) {
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    std::string expect = xdg && *xdg ? std::string(xdg) + "/mpod" : "/tmp/mpod-" + std::to_string(geteuid());
    EXPECT_EQ(default_runtime_dir(), expect);
    return;
  }
  EXPECT_EQ(default_runtime_dir(), "/var/run/mpod");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(3);
    setenv("XDG_RUNTIME_DIR", "/run/user/65534", 1);
    if (default_runtime_dir() != "/run/user/65534/mpod") _exit(1);
    setenv("XDG_RUNTIME_DIR", "", 1);
    if (default_runtime_dir() != "/tmp/mpod-65534") _exit(2);
    unsetenv("XDG_RUNTIME_DIR");
    if (default_runtime_dir() != "/tmp/mpod-65534") _exit(2);
    _exit(0);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == 3) GTEST_SKIP() << "cannot drop privileges to uid 65534 here";
  EXPECT_EQ(WEXITSTATUS(st), 0) << "1: XDG_RUNTIME_DIR ignored; 2: /tmp/mpod-<uid> fallback wrong";
}

}  // namespace
}  // namespace mpod
