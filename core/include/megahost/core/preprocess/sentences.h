// megahost core — the sentence splitter of `megahost preprocess --split-sentences`.
//
// Megatron splits with NLTK's punkt model; this is a small rule-based splitter instead, so
// sentence boundaries can differ from Megatron's (the .bin/.idx layout does not). Rules:
//  - a sentence may end after a run of . ! ? (plus closing quotes / brackets " ' ) ] ” ’),
//  - only where whitespace follows and then an upper-case ASCII letter, a digit or an opening
//    quote / bracket (" ' ( [ “ ‘),
//  - not after a '.' ending a known abbreviation (Mr. Mrs. Dr. e.g. i.e. etc. U.S. ...; list in
//    sentences.cpp) or a single-letter initial (J. Smith).
// Like punkt, the first sentence starts at 0 (leading whitespace kept), whitespace between
// sentences is dropped (kept at the end of the previous sentence with keep_newlines, Megatron's
// --keep-newlines) and the last sentence loses its trailing whitespace. As Megatron, the text is
// first cut into pieces of 1,000,000 code points, split separately.
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace megahost::core::prep {

// Appends the sentences of `text` to `out` as views into it (empty ones included).
void split_sentences(std::string_view text, bool keep_newlines, std::vector<std::string_view>& out);

}  // namespace megahost::core::prep
