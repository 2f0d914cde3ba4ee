#include "flags/flags.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace sessiond::flags {
namespace {

TEST(ParseIntTest, AcceptsTheRangeAndSaysItOtherwise) {
  EXPECT_EQ(*ParseInt("1", 1, 10), 1);
  EXPECT_EQ(*ParseInt("10", 1, 10), 10);
  for (const char* bad : {"0", "11", "", "5x", "1.5"}) {
    absl::StatusOr<int64_t> parsed = ParseInt(bad, 1, 10);
    EXPECT_EQ(parsed.status(),
              absl::InvalidArgumentError("must be an integer from 1 to 10"))
        << bad;
  }
}

TEST(ParseDurationTest, AcceptsTheRangeAndSaysItOtherwise) {
  EXPECT_EQ(*ParseDuration("90s", absl::Seconds(1), absl::Minutes(2)),
            absl::Seconds(90));
  EXPECT_EQ(*ParseDuration("0", absl::ZeroDuration(), absl::Minutes(2)),
            absl::ZeroDuration());
  for (const char* bad : {"500ms", "3m", "", "10", "forever"}) {
    absl::StatusOr<absl::Duration> parsed =
        ParseDuration(bad, absl::Seconds(1), absl::Minutes(2));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_EQ(parsed.status().message(),
              "must be a duration (like 90s, 30m, 12h) from 1s to 2m")
        << bad;
  }
}

TEST(ParseBoolTest, AcceptsTheUsualSpellings) {
  for (const char* yes : {"true", "1", "yes", "TRUE", "Yes"}) {
    EXPECT_TRUE(*ParseBool(yes)) << yes;
  }
  for (const char* no : {"false", "0", "no", "False", "NO"}) {
    EXPECT_FALSE(*ParseBool(no)) << no;
  }
  EXPECT_EQ(ParseBool("maybe").status(),
            absl::InvalidArgumentError("must be true or false"));
}

TEST(DurationToTextTest, ParsesBackToTheSameDuration) {
  for (absl::Duration d : {absl::ZeroDuration(), absl::Milliseconds(10),
                           absl::Seconds(90), absl::Hours(24 * 400)}) {
    const std::string text = DurationToText(d);
    EXPECT_EQ(
        *ParseDuration(text, absl::ZeroDuration(), absl::InfiniteDuration()), d)
        << text;
  }
  EXPECT_EQ(DurationToText(absl::ZeroDuration()), "0s");
}

struct Settings {
  std::string path = "./x.db";
  int pool = 8;
  absl::Duration timeout = absl::Seconds(5);
  bool verbose = false;
};

TEST(FlagSetTest, DefaultsComeFromTheStructAndSettersSetTheField) {
  FlagSet<Settings> set;
  set.String("path", "where", &Settings::path)
      .Int("pool", "how many", &Settings::pool, 1, 100)
      .Duration("timeout", "how long", &Settings::timeout, absl::Seconds(1),
                absl::Minutes(1))
      .Bool("verbose", "say more", &Settings::verbose);
  ASSERT_EQ(set.flags().size(), 4u);
  EXPECT_EQ(set.Find("path")->info.default_text, "./x.db");
  EXPECT_EQ(set.Find("pool")->info.default_text, "8");
  EXPECT_EQ(set.Find("timeout")->info.default_text, "5s");
  EXPECT_EQ(set.Find("verbose")->info.default_text, "false");
  EXPECT_TRUE(set.Find("verbose")->info.is_bool);
  EXPECT_EQ(set.Find("nope"), nullptr);

  Settings s;
  ASSERT_TRUE(set.Find("path")->set("/var/db", &s).ok());
  ASSERT_TRUE(set.Find("pool")->set("3", &s).ok());
  ASSERT_TRUE(set.Find("timeout")->set("30s", &s).ok());
  ASSERT_TRUE(set.Find("verbose")->set("yes", &s).ok());
  EXPECT_EQ(s.path, "/var/db");
  EXPECT_EQ(s.pool, 3);
  EXPECT_EQ(s.timeout, absl::Seconds(30));
  EXPECT_TRUE(s.verbose);

  // A bad value leaves the field as it was.
  EXPECT_FALSE(set.Find("pool")->set("1000", &s).ok());
  EXPECT_EQ(s.pool, 3);
}

TEST(FlagSetTest, StringChecksRunBeforeTheFieldIsSet) {
  FlagSet<Settings> set;
  set.String("path", "where", &Settings::path, [](absl::string_view v) {
    return v.empty() ? absl::InvalidArgumentError("must not be empty")
                     : absl::OkStatus();
  });
  Settings s;
  EXPECT_EQ(set.Find("path")->set("", &s),
            absl::InvalidArgumentError("must not be empty"));
  EXPECT_EQ(s.path, "./x.db");
}

}  // namespace
}  // namespace sessiond::flags
