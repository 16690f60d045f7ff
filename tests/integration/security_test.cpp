// Who may use a domain: owner-only permissions by default, --group to widen
// them to one group, and messages from any other uid refused by the
// credentials the kernel attaches, even when permissions would let them in.
// Needs root (to run processes as another uid) and setpriv (util-linux).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <regex>

#include "domain_fixture.hpp"

namespace mpod::test {
namespace {

std::optional<std::string> cannot_switch_uid() {
  if (geteuid() != 0) return "needs root to run processes as another uid";
  if (access("/usr/bin/setpriv", X_OK) != 0) return "needs /usr/bin/setpriv (util-linux)";
  return std::nullopt;
}

constexpr const char* kStranger = "65534";  // nobody
constexpr const char* kGroup = "4242";      // a group only the tests use

std::vector<std::string> as_user(const std::string& uid, const std::string& gid, std::vector<std::string> argv) {
  std::vector<std::string> a = {"/usr/bin/setpriv", "--reuid=" + uid, "--regid=" + gid, "--clear-groups"};
  a.insert(a.end(), argv.begin(), argv.end());
  return a;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class SecurityTest : public DomainTest {
 protected:
  void SetUp() override {
    DomainTest::SetUp();
    // The runtime directory stands for a hostPath volume every pod can reach:
    // world-writable and sticky, like /tmp (one without the sticky bit is refused).
    chmod(dir_.path().c_str(), 01777);
  }
  std::string socket_of(const std::string& id) const { return domain_dir() + "/mp/" + id + ".sock"; }
  static std::string id_in(const std::string& out) { return out.substr(out.find("id=") + 3, 32); }
};

TEST_F(SecurityTest, OwnerOnlyByDefaultAndAStrangerCannotAttach) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Child primary = start_primary();
  const std::string id = id_in(primary.output());
  EXPECT_EQ(mode_of(domain_dir()), 0700u);
  EXPECT_EQ(mode_of(domain_dir() + "/mp"), 0700u);
  EXPECT_EQ(mode_of(socket_of(id)), 0600u);
  EXPECT_EQ(mode_of(domain_dir() + "/mp/" + id + ".mbox"), 0600u);
  auto argv = proc("attach", {"--no-huge", "--proc-type=secondary"});
  auto r = run(as_user(kStranger, kStranger, argv));
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "ermission")) << r.output;
  EXPECT_TRUE(contains(r.output, domain_dir())) << "the error should name what it could not open:\n" << r.output;
}

TEST_F(SecurityTest, MessagesFromAForeignUidAreDroppedAndTheChannelKeepsServing) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Child primary = start_primary();
  const std::string id = id_in(primary.output());
  // Open the way on purpose: only the credentials check is left to stop it.
  chmod(domain_dir().c_str(), 0777);
  chmod((domain_dir() + "/mp").c_str(), 0777);
  chmod(socket_of(id).c_str(), 0666);
  auto r = run(as_user(kStranger, kStranger, {bin("mpod-test-proc"), "raw-send", socket_of(id)}));
  ASSERT_TRUE(contains(r.output, "SENT")) << r.output;
  EXPECT_TRUE(primary.wait_for_output("sent by uid 65534", std::chrono::seconds(5))) << primary.output();
  EXPECT_FALSE(contains(primary.output(), "from-a-stranger"));
  // A process of our own uid is still answered (once the way is closed again:
  // it refuses a domain directory everybody can write).
  chmod(domain_dir().c_str(), 0700);
  chmod((domain_dir() + "/mp").c_str(), 0700);
  auto ok = run(proc("requester", {"--no-huge"}, {"--to=" + id, "--data=after"}));
  EXPECT_TRUE(contains(ok.output, "data=echo:after|")) << ok.output;
}

TEST_F(SecurityTest, GroupOptionLetsAnotherUidOfTheGroupAttachAndTalk) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Child primary = start_primary({"--no-huge", std::string("--group=") + kGroup});
  const std::string id = id_in(primary.output());
  // (permission bits only: the sticky and set-group-id bits are HostileDirTest's to check)
  EXPECT_EQ(mode_of(domain_dir()) & 0777, 0770u);
  EXPECT_EQ(mode_of(socket_of(id)), 0660u);
  struct stat st {};
  ASSERT_EQ(stat(socket_of(id).c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, gid_t(4242));
  // uid 65534 in group 4242 attaches, requests, and is answered both ways.
  auto member = run(as_user(kStranger, kGroup,
                            proc("requester", {"--no-huge", std::string("--group=") + kGroup}, {"--to=" + id, "--data=member"})));
  EXPECT_EQ(member.code, 0) << member.output;
  EXPECT_TRUE(contains(member.output, "data=echo:member|")) << member.output;
  // Mailboxes are owner-only even with --group: another uid talks by socket,
  // where the kernel vouches for its uid.
  EXPECT_TRUE(std::regex_search(member.output, std::regex("by_mailbox=0\\b"))) << member.output;
  const mode_t mbox_mode = mode_of(domain_dir() + "/mp/" + id + ".mbox");
  EXPECT_EQ(mbox_mode, 0600u) << "the primary's mailbox is mode 0" << std::oct << mbox_mode << ", should be 0600";
  // uid 65534 outside the group is still kept out.
  auto outsider = run(as_user(kStranger, kStranger, proc("requester", {"--no-huge"}, {"--to=" + id, "--data=outsider"})));
  EXPECT_NE(outsider.code, 0) << outsider.output;
  EXPECT_FALSE(contains(outsider.output, "data=echo:outsider")) << outsider.output;
}

}  // namespace
}  // namespace mpod::test
