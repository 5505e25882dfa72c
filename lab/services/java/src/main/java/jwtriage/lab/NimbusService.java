package jwtriage.lab;

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jose.util.DefaultResourceRetriever;
import com.nimbusds.jose.util.JSONObjectUtils;
import com.nimbusds.jose.util.Resource;
import com.nimbusds.jose.util.ResourceRetriever;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.FileWriter;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.Executors;

/**
 * The lab's Java resource server: Nimbus DefaultJWTProcessor with a JWKSourceBuilder source and its
 * defaults (5 min cache, refresh on an unknown kid at most once per 30 s, the claims verifier's 60 s
 * clock skew). GET /api wants a Bearer token; each rejection is one AuthFailureEvent JSON line
 * (reported_error = e.getMessage()), and a SampledToken line when the token's hash falls under the
 * sampling rate. GET /fetches lists when the JWKS was fetched (the retriever only notes the time).
 */
public final class NimbusService {
  private static final Map<String, String> ENV = System.getenv();
  private static final List<String> FETCHES = new ArrayList<>();

  private NimbusService() {}

  static String now() {
    return Instant.now().truncatedTo(ChronoUnit.MILLIS).toString();
  }

  static final class RecordingRetriever implements ResourceRetriever {
    private final DefaultResourceRetriever inner = new DefaultResourceRetriever(5_000, 5_000, 512 * 1024);

    @Override
    public Resource retrieveResource(URL url) throws IOException {
      Resource resource = inner.retrieveResource(url);
      synchronized (FETCHES) {
        FETCHES.add(now());
      }
      return resource;
    }
  }

  static DefaultJWTProcessor<SecurityContext> processor() throws Exception {
    JWKSource<SecurityContext> source =
        JWKSourceBuilder.create(new URL(ENV.get("LAB_JWKS_URL")), new RecordingRetriever()).build();
    DefaultJWTProcessor<SecurityContext> processor = new DefaultJWTProcessor<>();
    processor.setJWSKeySelector(new JWSVerificationKeySelector<>(Set.of(JWSAlgorithm.RS256), source));
    processor.setJWTClaimsSetVerifier(new DefaultJWTClaimsVerifier<>(
        ENV.get("LAB_AUDIENCE"), new JWTClaimsSet.Builder().issuer(ENV.get("LAB_ISSUER")).build(), Set.of("exp")));
    return processor;
  }

  static synchronized void append(String path, Map<String, Object> record) throws IOException {
    try (FileWriter out = new FileWriter(path, StandardCharsets.UTF_8, true)) {
      out.write(JSONObjectUtils.toJSONString(record) + "\n");
    }
  }

  static void logRejection(String token, String message, HttpExchange exchange) throws Exception {
    byte[] sum = MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.ISO_8859_1));
    String digest = HexFormat.of().formatHex(sum);
    String ts = now();
    Map<String, Object> event = new LinkedHashMap<>();
    event.put("event_id", UUID.randomUUID().toString());
    event.put("ts", ts);
    event.put("service", ENV.get("LAB_SERVICE"));
    event.put("reported_error", message);
    synchronized (FETCHES) {
      event.put("service_jwks_fetched_at", FETCHES.isEmpty() ? null : FETCHES.get(FETCHES.size() - 1));
    }
    event.put("client_id", exchange.getRequestHeaders().getFirst("X-Client-Id"));
    event.put("request_id", exchange.getRequestHeaders().getFirst("X-Request-Id"));
    event.put("token_sha256", digest);
    append(ENV.get("LAB_EVENTS"), event);
    if ((sum[0] & 0xff) < Integer.parseInt(ENV.get("LAB_SAMPLE_BELOW"))) {
      append(ENV.get("LAB_SAMPLES"), new LinkedHashMap<>(Map.of("token", token, "sampled_at", ts,
          "service", ENV.get("LAB_SERVICE"))));
    }
  }

  static void reply(HttpExchange exchange, int status, String body) throws IOException {
    byte[] data = body.getBytes(StandardCharsets.UTF_8);
    exchange.getResponseHeaders().set("Content-Type", "application/json");
    exchange.sendResponseHeaders(status, data.length);
    try (OutputStream out = exchange.getResponseBody()) {
      out.write(data);
    }
  }

  public static void main(String[] args) throws Exception {
    DefaultJWTProcessor<SecurityContext> processor = processor();
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(ENV.get("LAB_PORT"))), 64);
    server.setExecutor(Executors.newFixedThreadPool(8));
    server.createContext("/health", ex -> reply(ex, 200, "{\"library\": \"nimbus-jose-jwt\"}"));
    server.createContext("/fetches", ex -> {
      List<Object> copy;
      synchronized (FETCHES) {
        copy = new ArrayList<>(FETCHES);
      }
      reply(ex, 200, com.nimbusds.jose.util.JSONArrayUtils.toJSONString(copy));
    });
    server.createContext("/api", ex -> {
      String header = ex.getRequestHeaders().getFirst("Authorization");
      String token = header == null ? "" : header.replaceFirst("^Bearer ", "");
      try {
        processor.process(token, null);
        reply(ex, 200, "{\"ok\": true}");
      } catch (Exception e) {
        try {
          // as a logger prints it: the message, or the exception's name when it has none
          logRejection(token, e.getMessage() != null ? e.getMessage() : e.toString(), ex);
        } catch (Exception logError) {
          System.err.println("lab-service-java: cannot log a rejection: " + logError);
        }
        reply(ex, 401, "{\"error\": \"invalid_token\"}");
      }
    });
    server.start();
  }
}
