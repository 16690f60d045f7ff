#include <gtest/gtest.h>

#include "mpod/error.hpp"

TEST(Error, CarriesCodePathAndErrnoText) {
  mpod::Error e(mpod::Errc::not_found, "cannot open /x/config", "/x/config", 2);
  EXPECT_EQ(e.code(), mpod::Errc::not_found);
  EXPECT_EQ(e.path(), "/x/config");
  EXPECT_EQ(e.sys_errno(), 2);
  EXPECT_STREQ(e.what(), "cannot open /x/config (No such file or directory)");
  EXPECT_STREQ(mpod::errc_name(e.code()), "not_found");
}
