#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/options.hpp"

namespace mpod {
namespace {

struct Parsed {
  Options o;
  int first;
};

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  Parsed p;
  p.first = parse_options(static_cast<int>(argv.size()), argv.data(), p.o);
  return p;
}

std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    return e.what();
  }
  return "(no error)";
}

TEST(Options, EveryOptionInBothForms) {
  for (bool eq : {true, false}) {
    auto opt = [&](const std::string& name, const std::string& v) {
      return eq ? std::vector<std::string>{name + "=" + v} : std::vector<std::string>{name, v};
    };
    std::vector<std::string> args;
    for (auto v : {opt("--proc-type", "secondary"), opt("--file-prefix", "app1"), opt("--runtime-dir", "/r"),
                   opt("--huge-dir", "/h"), opt("--memory", "128"), opt("--base-virtaddr", "0x4000000000"),
                   opt("--wait-primary", "2.5"), opt("--log-level", "memory:debug")})
      args.insert(args.end(), v.begin(), v.end());
    args.push_back("--no-huge");
    auto p = parse(args);
    EXPECT_EQ(p.first, static_cast<int>(args.size()) + 1);
    EXPECT_EQ(p.o.proc_type, ProcType::secondary);
    EXPECT_EQ(p.o.file_prefix, "app1");
    EXPECT_EQ(p.o.runtime_dir, "/r");
    EXPECT_EQ(p.o.huge_dir, "/h");
    EXPECT_EQ(p.o.memory_mb, 128u);
    EXPECT_EQ(p.o.base_virtaddr, 0x4000000000u);
    EXPECT_DOUBLE_EQ(p.o.wait_primary_s, 2.5);
    EXPECT_TRUE(p.o.no_huge);
    ASSERT_EQ(p.o.log_levels.size(), 1u);
  }
  EXPECT_EQ(parse({"-m64"}).o.memory_mb, 64u);
  EXPECT_EQ(parse({"-m", "64"}).o.memory_mb, 64u);
  EXPECT_EQ(parse({"--proc-type=auto"}).o.proc_type, ProcType::automatic);
  EXPECT_EQ(parse({}).o.proc_type, ProcType::primary);
  log::set_level("", "notice");  // parsing --log-level changed the process-wide level
}

TEST(Options, ReturnsTheIndexOfTheFirstApplicationArgument) {
  EXPECT_EQ(parse({"--no-huge", "--", "--client-id", "3"}).first, 3);  // "--" is skipped
  EXPECT_EQ(parse({"--no-huge", "app-arg", "--file-prefix=x"}).first, 2);
  auto p = parse({"app-arg", "--file-prefix=x"});
  EXPECT_EQ(p.first, 1);
  EXPECT_EQ(p.o.file_prefix, "mpod");  // not parsed: it belongs to the application
  EXPECT_EQ(parse({}).first, 1);
}

TEST(Options, BadInputNamesTheOption) {
  EXPECT_NE(error_of({"--bogus"}).find("unknown option '--bogus'"), std::string::npos);
  EXPECT_NE(error_of({"-m"}).find("-m needs a value"), std::string::npos);
  EXPECT_NE(error_of({"-m", "abc"}).find("-m needs a number, got 'abc'"), std::string::npos);
  EXPECT_NE(error_of({"-m", "0"}).find("-m needs a size"), std::string::npos);
  EXPECT_NE(error_of({"--wait-primary=-1"}).find("--wait-primary"), std::string::npos);
  EXPECT_NE(error_of({"--wait-primary=soon"}).find("--wait-primary"), std::string::npos);
  EXPECT_NE(error_of({"--base-virtaddr=0x1001"}).find("page-aligned"), std::string::npos);
  EXPECT_NE(error_of({"--base-virtaddr=0x900000000000"}).find("--base-virtaddr"), std::string::npos);
  EXPECT_NE(error_of({"--proc-type=boss"}).find("primary, secondary or auto"), std::string::npos);
  EXPECT_NE(error_of({"--file-prefix=a/b"}).find("--file-prefix"), std::string::npos);
  EXPECT_NE(error_of({"--file-prefix="}).find("--file-prefix"), std::string::npos);
  EXPECT_NE(error_of({"--file-prefix=" + std::string(65, 'x')}).find("1 to 64"), std::string::npos);
  EXPECT_NE(error_of({"--no-huge=yes"}).find("--no-huge takes no value"), std::string::npos);
  EXPECT_NE(error_of({"--log-level=memory:loud"}).find("--log-level"), std::string::npos);
  EXPECT_NE(error_of({"--log-level=nosuch:debug"}).find("--log-level"), std::string::npos);
  EXPECT_NE(error_of({"--runtime-dir="}).find("--runtime-dir needs a directory"), std::string::npos);
}

}  // namespace
}  // namespace mpod
