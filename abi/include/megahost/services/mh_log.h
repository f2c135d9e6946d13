/* megahost ABI — service "mh.log/1": one log sink, owned by the host. */
#ifndef MEGAHOST_SERVICES_MH_LOG_H
#define MEGAHOST_SERVICES_MH_LOG_H

#include "megahost/mh_host.h"

MH_EXTERN_C_BEGIN

typedef int32_t mh_log_level;
#define MH_LOG_TRACE 0
#define MH_LOG_DEBUG 1
#define MH_LOG_INFO 2
#define MH_LOG_WARN 3
#define MH_LOG_ERROR 4
#define MH_LOG_OFF 6

typedef struct mh_log_service {
  mh_table_header hdr;
  /* Writes one message. channel names the source (e.g. "tokenizer.gpt2-bpe"); file/line may
   * be NULL/0. All strings are borrowed for the call. [thread-safe] \since 1.0 */
  void(MH_ABI* log)(const mh_host* host, mh_log_level level, const char* channel, const char* file,
                    int32_t line, const char* utf8_message);
  /* The lowest level that is printed, so callers can skip formatting. [thread-safe] \since 1.0 */
  mh_log_level(MH_ABI* level)(const mh_host* host);
} mh_log_service;

MH_EXTERN_C_END

#endif /* MEGAHOST_SERVICES_MH_LOG_H */
