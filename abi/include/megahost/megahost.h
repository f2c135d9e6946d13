/* megahost ABI v1 — umbrella header: everything a plugin author needs. */
#ifndef MEGAHOST_MEGAHOST_H
#define MEGAHOST_MEGAHOST_H

#include "megahost/mh_platform.h"
#include "megahost/mh_version.h"
#include "megahost/mh_error.h"
#include "megahost/mh_tensor.h"
#include "megahost/mh_host.h"
#include "megahost/mh_plugin.h"
#include "megahost/services/mh_log.h"
#include "megahost/services/mh_config.h"
#include "megahost/services/mh_run.h"
#include "megahost/services/mh_rng.h"
#include "megahost/services/mh_dist.h"
#include "megahost/kinds/mh_model.h"
#include "megahost/kinds/mh_tokenizer.h"
#include "megahost/kinds/mh_dataset.h"
#include "megahost/kinds/mh_checkpoint.h"
#include "megahost/kinds/mh_optimizer.h"
#include "megahost/kinds/mh_converter.h"

#endif /* MEGAHOST_MEGAHOST_H */
