#!/usr/bin/perl
# bench/sa-hits.pl - SpamAssassin's verdict on each message of a list, in
# one process (as spamd would run it), network tests off (-L), Bayes off.
# Usage: perl bench/sa-hits.pl RULES_DIR WORKDIR < LIST > OUT
#   LIST: one path per line. OUT: one line per message, "PATH<TAB>RULE,RULE,..."
#   (the scored rules that hit; sub-rules are never listed by SpamAssassin).
# Timing: the last line on stderr is "sa-hits: N messages in S seconds".
# SA_BAYES_DB=PATH: use the Bayes database at PATH (trained beforehand with
# sa-learn --dbpath PATH), as a trained spamd would; default Bayes off.
use strict;
use warnings;
use Mail::SpamAssassin;
use Time::HiRes qw(time);

my ($rules, $work) = @ARGV;
die "usage: $0 RULES_DIR WORKDIR < LIST > OUT\n" unless defined $work;
# The plugins Debian enables (the .pre files), none of its local.cf settings.
mkdir $work;
mkdir "$work/site";
for my $pre (glob("/etc/spamassassin/*.pre")) {
    system("cp", $pre, "$work/site/") == 0 or die "cannot copy $pre\n";
}
my $sa = Mail::SpamAssassin->new({
    rules_filename       => $rules,
    site_rules_filename  => "$work/site",
    userprefs_filename   => "$work/user_prefs",
    home_dir_for_helpers => $work,
    local_tests_only     => 1,
    dont_copy_prefs      => 1,
    post_config_text     => ($ENV{SA_BAYES_DB}
                             ? "use_bayes 1\nbayes_path $ENV{SA_BAYES_DB}/bayes\n"
                             : "use_bayes 0\n")
                            . "use_auto_whitelist 0\nbayes_auto_learn 0\n",
});
$sa->compile_now(0);
my ($n, $t0) = (0, time);
while (my $path = <STDIN>) {
    chomp $path;
    open(my $fh, '<', $path) or die "$path: $!\n";
    my @lines = <$fh>;
    close $fh;
    my $msg = $sa->parse(\@lines);
    my $status = $sa->check($msg);
    my @hits = grep { !/^__/ } split(/,/, $status->get_names_of_tests_hit());
    print "$path\t", join(',', sort @hits), "\n";
    $status->finish();
    $msg->finish();
    $n++;
}
printf STDERR "sa-hits: %d messages in %.2f seconds\n", $n, time - $t0;
