/*
 * Contour boxes of every level set of a uint8 map, in two union-find passes.
 *
 * For a present value v, the protocol's contours of {q >= v} are one outer contour per
 * 8-connected component of the set and one hole contour per 4-connected component of its
 * complement {q < v} that does not reach the image edge (cv2.findContours pads the image with
 * background). Adding pixels in order of value builds these components for every level at once:
 *
 *   outer pass: pixels from the highest value down, joined to their 8 neighbours;
 *   hole pass:  pixels from the lowest value up, joined to their 4 neighbours, the padding ring
 *               being one component that marks whatever joins it as touching the edge.
 *
 * A component's box changes only when it grows past its box or merges. Each box is written once,
 * with the first and last wanted level at which the component had it, so the output holds every
 * box of every wanted level without repeating unchanged boxes from level to level.
 *
 * Python API: level_boxes(q, wanted, holes) -> bytes of int64 records
 *   (x0, y0, x1, y1, first, last): the protocol box (x, y, x + w, y + h clamped to W - 1 and
 *   H - 1) and the range of wanted levels, as indices into the ascending wanted values.
 * q: C-contiguous 2-D uint8 buffer; wanted: 256 bytes, non-zero for the values v whose set
 * {q >= v} is wanted (each present in q); holes: whether to run the hole pass.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t *data; /* records of 6 int64 */
    size_t count;
    size_t capacity;
} Records;

/* What a root knows of its component; one record per cell, read only through roots. */
typedef struct {
    int32_t x0, y0, x1, y1; /* pixel box, padded coordinates */
    int32_t size;
    int32_t seen;  /* first wanted level (processing order) with the current box; -1: none */
    uint8_t dirty; /* in the dirty list: changed or created since the last wanted level */
    uint8_t edge;  /* hole pass: the component reaches the image edge */
} Root;

typedef struct {
    int32_t *parent;   /* -1: not added yet */
    Root *roots;
    int32_t *dirty_list;
    size_t dirty_count;
    int32_t width, height;
    int holes;         /* which pass: box conversion and edge handling */
    int32_t levels;    /* wanted levels snapshotted so far */
    int32_t total;     /* wanted levels of the pass */
    Records *out;
    int failed;
} Pass;

static int records_push(Pass *pass, int32_t root, int32_t last_level)
{
    Records *out = pass->out;
    if (out->count == out->capacity) {
        size_t capacity = out->capacity ? out->capacity * 2 : 1024;
        int64_t *grown = realloc(out->data, capacity * 6 * sizeof(int64_t));
        if (grown == NULL) {
            pass->failed = 1;
            return -1;
        }
        out->data = grown;
        out->capacity = capacity;
    }
    const Root *b = pass->roots + root;
    /* Padded coordinates are one more than the image's. */
    int64_t x0 = b->x0 - 1, y0 = b->y0 - 1, x1 = b->x1 - 1, y1 = b->y1 - 1;
    int64_t *r = out->data + 6 * out->count;
    if (pass->holes) {
        /* The hole contour runs on the pixels around the hole: its pixel box grows by one. */
        r[0] = x0 - 1;
        r[1] = y0 - 1;
        r[2] = x1 + 2 < pass->width - 1 ? x1 + 2 : pass->width - 1;
        r[3] = y1 + 2 < pass->height - 1 ? y1 + 2 : pass->height - 1;
    } else {
        r[0] = x0;
        r[1] = y0;
        r[2] = x1 + 1 < pass->width - 1 ? x1 + 1 : pass->width - 1;
        r[3] = y1 + 1 < pass->height - 1 ? y1 + 1 : pass->height - 1;
    }
    int64_t first = b->seen, last = last_level;
    if (!pass->holes) { /* the outer pass walks the levels downwards: ascending indices */
        first = pass->total - 1 - last_level;
        last = pass->total - 1 - b->seen;
    }
    r[4] = first;
    r[5] = last;
    out->count++;
    return 0;
}

static inline int32_t find(int32_t *parent, int32_t p)
{
    while (parent[p] != p) {
        parent[p] = parent[parent[p]];
        p = parent[p];
    }
    return p;
}

/* The root's box is about to change or the root to die: write the box it had, if it was seen
 * at a wanted level, and mark it for the next one. */
static inline void retire(Pass *pass, int32_t root)
{
    Root *r = pass->roots + root;
    if (r->seen >= 0) {
        records_push(pass, root, pass->levels - 1);
        r->seen = -1;
    }
    if (!r->dirty) {
        r->dirty = 1;
        pass->dirty_list[pass->dirty_count++] = root;
    }
}

/* Whether the root's component gives a contour: every one in the outer pass, the ones off the
 * edge in the hole pass. */
static inline int counts(const Root *r)
{
    return !r->edge;
}

static inline void extend(Pass *pass, int32_t root, int32_t x, int32_t y)
{
    Root *b = pass->roots + root;
    b->size += 1;
    if (x < b->x0 || y < b->y0 || x > b->x1 || y > b->y1) {
        if (counts(b))
            retire(pass, root);
        if (x < b->x0) b->x0 = x;
        if (y < b->y0) b->y0 = y;
        if (x > b->x1) b->x1 = x;
        if (y > b->y1) b->y1 = y;
    }
}

/* Merge two distinct roots; returns the surviving one. */
static int32_t merge(Pass *pass, int32_t a, int32_t b)
{
    Root *ra = pass->roots + a, *rb = pass->roots + b;
    if (ra->size < rb->size) {
        Root *t = ra;
        ra = rb;
        rb = t;
        int32_t i = a;
        a = b;
        b = i;
    }
    /* b dies */
    if (counts(rb) && rb->seen >= 0)
        records_push(pass, b, pass->levels - 1);
    rb->seen = -1;
    pass->parent[b] = a;
    ra->size += rb->size;
    if (rb->edge && !ra->edge) {
        retire(pass, a); /* no longer a hole */
        ra->edge = 1;
    }
    if (rb->x0 < ra->x0 || rb->y0 < ra->y0 || rb->x1 > ra->x1 || rb->y1 > ra->y1) {
        if (counts(ra))
            retire(pass, a);
        if (rb->x0 < ra->x0) ra->x0 = rb->x0;
        if (rb->y0 < ra->y0) ra->y0 = rb->y0;
        if (rb->x1 > ra->x1) ra->x1 = rb->x1;
        if (rb->y1 > ra->y1) ra->y1 = rb->y1;
    }
    return a;
}

/* The 8 neighbours in ring order: NW, N, NE, E, SE, S, SW, W. Each is 4-adjacent to the next,
 * so neighbours that are consecutive on the ring and already added are already one component:
 * the new pixel needs one find per run of added neighbours (one, most often), not one per
 * neighbour. For the 4-connected hole pass, two 4-neighbours are already joined when the corner
 * between them is added. REPRESENTATIVES[mask] lists one neighbour (ring index) per group. */
static uint8_t representative_count[2][256];
static uint8_t representatives[2][256][4];

static void build_tables(void)
{
    for (int mask = 0; mask < 256; mask++) {
        int n = 0;
        if (mask == 0xff) {
            representatives[0][mask][n++] = 0;
        } else {
            for (int k = 0; k < 8; k++) { /* a run starts where the previous one is not added */
                if ((mask >> k & 1) && !(mask >> ((k + 7) % 8) & 1))
                    representatives[0][mask][n++] = (uint8_t)k;
            }
        }
        representative_count[0][mask] = (uint8_t)n;
        n = 0;
        int edges = 0; /* N, E, S, W are ring indices 1, 3, 5, 7; the corner after each joins */
        for (int k = 1; k < 8; k += 2)
            edges += mask >> k & 1;
        int all_joined = edges == 4 && (mask & 0x55) == 0x55;
        for (int k = 1; k < 8; k += 2) {
            if (!(mask >> k & 1))
                continue;
            int previous = (k + 6) % 8, corner = (k + 7) % 8;
            if (all_joined ? k != 1 : ((mask >> previous & 1) && (mask >> corner & 1)))
                continue; /* joined to the previous edge neighbour through the corner */
            representatives[1][mask][n++] = (uint8_t)k;
        }
        representative_count[1][mask] = (uint8_t)n;
    }
}

/* Add pixel p (padded index; padded coordinates packed as y << 16 | x) to the sets; ring holds
 * the 8 neighbour offsets in ring order, connectivity 0 for 8-connected, 1 for 4-connected. */
static inline void add_pixel(Pass *pass, int32_t p, uint32_t xy, const int32_t *ring,
                             int connectivity)
{
    int32_t *parent = pass->parent;
    unsigned mask = 0;
    for (int k = 0; k < 8; k++)
        mask |= (unsigned)(parent[p + ring[k]] >= 0) << k;
    int count = representative_count[connectivity][mask];
    if (count == 0) {
        Root *r = pass->roots + p;
        parent[p] = p;
        r->x0 = r->x1 = (int32_t)(xy & 0xffff);
        r->y0 = r->y1 = (int32_t)(xy >> 16);
        r->size = 1;
        r->seen = -1;
        r->edge = 0;
        r->dirty = 1;
        pass->dirty_list[pass->dirty_count++] = p;
        return;
    }
    const uint8_t *which = representatives[connectivity][mask];
    int32_t root = find(parent, parent[p + ring[which[0]]]);
    parent[p] = root;
    extend(pass, root, (int32_t)(xy & 0xffff), (int32_t)(xy >> 16));
    for (int i = 1; i < count; i++) {
        int32_t other = find(parent, parent[p + ring[which[i]]]);
        if (other != root) {
            root = merge(pass, root, other);
            parent[p] = root;
        }
    }
}

/* A wanted level is complete: every changed or new root that counts takes it as its first. */
static void snapshot(Pass *pass)
{
    for (size_t i = 0; i < pass->dirty_count; i++) {
        int32_t r = pass->dirty_list[i];
        Root *root = pass->roots + r;
        root->dirty = 0;
        if (pass->parent[r] == r && root->seen < 0 && counts(root))
            root->seen = pass->levels;
    }
    pass->dirty_count = 0;
    pass->levels++;
}

/* Write the boxes still alive after the last wanted level. */
static void flush(Pass *pass, const int32_t *order, size_t added)
{
    for (size_t i = 0; i < added; i++) {
        int32_t p = order[i];
        if (pass->parent[p] == p && pass->roots[p].seen >= 0 && counts(pass->roots + p))
            records_push(pass, p, pass->levels - 1);
    }
}

static int run(const uint8_t *q, int32_t height, int32_t width, const uint8_t *wanted, int holes,
               Records *out)
{
    int32_t pw = width + 2, ph = height + 2;
    size_t cells = (size_t)pw * (size_t)ph, pixels = (size_t)width * (size_t)height;
    size_t start[257] = {0};
    int total = 0, lowest = -1, highest = -1;
    for (int v = 0; v < 256; v++) {
        if (wanted[v]) {
            total++;
            if (lowest < 0) lowest = v;
            highest = v;
        }
    }
    if (total == 0)
        return 0;

    /* Counting sort of the pixels by value (row-major within a value): padded indices and
     * padded coordinates. */
    size_t histogram[256] = {0};
    for (size_t i = 0; i < pixels; i++)
        histogram[q[i]]++;
    for (int v = 0; v < 256; v++)
        start[v + 1] = start[v] + histogram[v];
    int32_t *order = malloc(pixels * sizeof(int32_t));
    uint32_t *coordinates = malloc(pixels * sizeof(uint32_t));
    int32_t *parent = malloc(cells * sizeof(int32_t));
    Root *roots = malloc(cells * sizeof(Root));
    int32_t *dirty_list = malloc(cells * sizeof(int32_t));
    int status = -1;
    if (!order || !coordinates || !parent || !roots || !dirty_list)
        goto done;
    {
        size_t next[256];
        memcpy(next, start, sizeof(next));
        for (int32_t y = 0; y < height; y++) {
            const uint8_t *row = q + (size_t)y * width;
            for (int32_t x = 0; x < width; x++) {
                size_t slot = next[row[x]]++;
                order[slot] = (y + 1) * pw + (x + 1);
                coordinates[slot] = ((uint32_t)(y + 1) << 16) | (uint32_t)(x + 1);
            }
        }
    }

    Pass pass = {parent, roots, dirty_list, 0, width, height, 0, 0, total, out, 0};
    const int32_t ring[8] = {-pw - 1, -pw, -pw + 1, 1, pw + 1, pw, pw - 1, -1};

    /* Outer pass: 8-connected components of {q >= v}, v from the highest wanted value down. */
    {
        for (size_t i = 0; i < cells; i++)
            parent[i] = -1;
        for (int v = 255; v >= lowest; v--) {
            for (size_t i = start[v]; i < start[v + 1]; i++)
                add_pixel(&pass, order[i], coordinates[i], ring, 0);
            if (wanted[v])
                snapshot(&pass);
        }
        flush(&pass, order + start[lowest], start[256] - start[lowest]);
    }

    /* Hole pass: 4-connected components of {q < v}, v from the lowest wanted value up; the
     * padding ring is one component that reaches the edge. */
    if (holes && !pass.failed) {
        const int32_t outside = 0; /* the padded corner */
        for (size_t i = 0; i < cells; i++)
            parent[i] = -1;
        for (int32_t x = 0; x < pw; x++) {
            parent[x] = outside;
            parent[(size_t)(ph - 1) * pw + x] = outside;
        }
        for (int32_t y = 0; y < ph; y++) {
            parent[(size_t)y * pw] = outside;
            parent[(size_t)y * pw + pw - 1] = outside;
        }
        Root padding = {0, 0, pw - 1, ph - 1, 2 * (pw + ph), -1, 0, 1};
        roots[outside] = padding;
        pass.holes = 1;
        pass.levels = 0;
        pass.dirty_count = 0;
        for (int v = 0; v <= highest; v++) {
            if (wanted[v])
                snapshot(&pass);
            if (v == highest)
                break;
            for (size_t i = start[v]; i < start[v + 1]; i++)
                add_pixel(&pass, order[i], coordinates[i], ring, 1);
        }
        flush(&pass, order, start[highest]);
    }
    status = pass.failed ? -1 : 0;

done:
    free(order);
    free(coordinates);
    free(parent);
    free(roots);
    free(dirty_list);
    return status;
}

static PyObject *level_boxes(PyObject *self, PyObject *args)
{
    PyObject *map_object, *wanted_object;
    int holes;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOp", &map_object, &wanted_object, &holes))
        return NULL;
    Py_buffer map, wanted;
    if (PyObject_GetBuffer(map_object, &map, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(wanted_object, &wanted, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&map);
        return NULL;
    }
    PyObject *result = NULL;
    if (map.ndim != 2 || map.itemsize != 1 || (map.format && strcmp(map.format, "B") != 0)) {
        PyErr_SetString(PyExc_ValueError, "q must be a 2-D uint8 buffer");
        goto release;
    }
    if (wanted.len != 256) {
        PyErr_SetString(PyExc_ValueError, "wanted must hold 256 bytes");
        goto release;
    }
    Py_ssize_t height = map.shape[0], width = map.shape[1];
    if (height < 1 || width < 1 || (height + 2) > INT32_MAX / (width + 2) / 4) {
        PyErr_SetString(PyExc_ValueError, "q must be non-empty and under 2**29 padded pixels");
        goto release;
    }
    /* Every wanted value must be present, or its level would be missing from the output. */
    {
        const uint8_t *q = map.buf, *w = wanted.buf;
        uint8_t present[256] = {0};
        for (Py_ssize_t i = 0; i < height * width; i++)
            present[q[i]] = 1;
        for (int v = 0; v < 256; v++) {
            if (w[v] && !present[v]) {
                PyErr_Format(PyExc_ValueError, "wanted value %d is not present in q", v);
                goto release;
            }
        }
    }
    Records out = {NULL, 0, 0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run(map.buf, (int32_t)height, (int32_t)width, wanted.buf, holes, &out);
    Py_END_ALLOW_THREADS
    if (status < 0)
        PyErr_NoMemory();
    else
        result = PyBytes_FromStringAndSize((const char *)out.data,
                                           (Py_ssize_t)(out.count * 6 * sizeof(int64_t)));
    free(out.data);

release:
    PyBuffer_Release(&wanted);
    PyBuffer_Release(&map);
    return result;
}

static PyMethodDef methods[] = {
    {"level_boxes", level_boxes, METH_VARARGS,
     "level_boxes(q, wanted, holes) -> bytes of int64 (x0, y0, x1, y1, first, last) records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_union_find",
    "Contour boxes of every level set of a uint8 map in two union-find passes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__union_find(void)
{
    build_tables();
    return PyModule_Create(&module);
}
