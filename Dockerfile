# The image users build: a static binary on an empty base, run as non-root,
# data on a volume. `docker build -t dynamo .`
# Where no registry answers, deploy/images/build.sh builds the same final
# stage from a binary built on the host (deploy/images/dynamo.Dockerfile);
# e2e/containers checks that the two final stages agree.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/dynamo ./cmd/dynamo \
    && mkdir -p /out/data

FROM scratch
COPY --from=build /out/dynamo /dynamo
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
ENV DYNAMO_DATA_DIR=/data \
    DYNAMO_LISTEN=0.0.0.0:8080 \
    DYNAMO_PEER_LISTEN=0.0.0.0:8081 \
    DYNAMO_GOSSIP_LISTEN=0.0.0.0:7946
EXPOSE 8080 8081 7946/tcp 7946/udp
# No shell or curl in the image: the binary probes /readyz itself.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/dynamo", "probe"]
ENTRYPOINT ["/dynamo"]
