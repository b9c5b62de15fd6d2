/*
 * dlpack_types.h: the DLPack structs, as <dlpack/dlpack.h> (version 1.1)
 * defines them, for the C test programs. The library's header only names
 * them (struct DLManagedTensorVersioned, struct DLManagedTensor), so a
 * program that includes the real dlpack.h beside it sees no clash; these
 * tests define them here instead of depending on an installed dlpack.h.
 */

#ifndef NNX_TEST_DLPACK_TYPES_H
#define NNX_TEST_DLPACK_TYPES_H

#include <stdint.h>

typedef struct { uint32_t major; uint32_t minor; } DLPackVersion;
typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides;
    uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;
#define DLPACK_FLAG_BITMASK_READ_ONLY (1ULL << 0)

#endif
